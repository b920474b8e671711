"""Run-level aggregates over case results: every metric of the registry (kept as the historical import path)."""

from __future__ import annotations

from typing import Mapping, Sequence

from pytest_genai.metrics.registry import aggregate as run_metrics
from pytest_genai.metrics.registry import mean, percentile
from pytest_genai.types import CaseResult


def aggregate(results: Sequence[CaseResult], cases_total: int, facts: Mapping[str, float] | None = None) -> dict[str, float]:
    return run_metrics(results, {"cases_total": float(cases_total), **(facts or {})})


__all__ = ["aggregate", "mean", "percentile"]
