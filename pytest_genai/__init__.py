"""pytest-genai: reproducible, gated GenAI evals as pytest items.

Kept light: importing this package (as pytest does for every run) pulls in no heavy library.
"""

from typing import Any

from pytest_genai.types import Answer, Case, CaseResult, Usage

__version__ = "0.4.0"  # the one version source: pyproject reads it, CHANGELOG's top entry names it

__all__ = ["Answer", "Case", "CaseResult", "Usage", "current_case_seed", "register_metric"]


def __getattr__(name: str) -> Any:
    """`register_metric` and `current_case_seed` load on first use: pytest imports this package in every run."""
    if name == "register_metric":
        from pytest_genai.metrics.registry import register_metric

        return register_metric
    if name == "current_case_seed":
        from pytest_genai.seeding import current_case_seed

        return current_case_seed
    raise AttributeError(f"module 'pytest_genai' has no attribute {name!r}")
