"""pytest-genai: reproducible, gated GenAI evals as pytest items.

Kept light: importing this package (as pytest does for every run) pulls in no heavy library.
"""

from pytest_genai.metrics.registry import register_metric
from pytest_genai.seeding import current_case_seed
from pytest_genai.types import Answer, Case, CaseResult, Usage

__all__ = ["Answer", "Case", "CaseResult", "Usage", "current_case_seed", "register_metric"]
__version__ = "0.1.0"
