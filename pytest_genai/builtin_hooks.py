"""The built-ins as implementations of pytest-genai's own hooks (`hookspec.py`), registered before any conftest
and marked `tryfirst`: a user's implementation extends exactly what the package does, and runs after it (so its
scores win on a clash and its terminal lines follow the metric table). Nothing heavy at import."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_genai_case_scores(case: Any, answer: Any, result: Any) -> dict[str, float] | None:
    """The per-case scores of every registered metric with a per-case function (built-in or registered)."""
    from pytest_genai.metrics.registry import per_case_scorers

    scores: dict[str, float] = {}
    for metric in per_case_scorers():
        value = metric.per_case(case, answer, result)  # type: ignore[misc]
        if value is not None:
            scores[metric.name] = float(value)
    return scores


@pytest.hookimpl(tryfirst=True)
def pytest_genai_terminal_lines(record: Any) -> list[Any]:
    """The metric table (units, CIs, deltas, gate verdicts), the comparison, status and run errors: the same
    lines `pytest-genai show` prints for a stored run."""
    from pytest_genai.report.terminal import summary_lines

    return list(summary_lines(record))
