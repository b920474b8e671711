"""Metrics: pure functions (text overlap, aggregates)."""

from pytest_genai.metrics.aggregate import aggregate, mean, percentile
from pytest_genai.metrics.text import em_score, f1_score, normalize_answer

__all__ = ["aggregate", "em_score", "f1_score", "mean", "normalize_answer", "percentile"]
