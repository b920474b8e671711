"""Fair comparisons: a candidate run paired with a baseline case by case, with bootstrap CIs and McNemar.
Pairing and names are light; the statistics (numpy) load on first use of `compare_runs`, `run_cis` & co."""

from __future__ import annotations

from typing import Any

from pytest_genai.compare.names import stat_name
from pytest_genai.compare.pairing import (CaseChange, CaseDelta, ComparisonError, Delta, Pairing, case_deltas,
                                          case_passed, pair_cases, pref_win_rate_f1, regressions)

_HEAVY = ("Comparison", "MetricComparison", "compare_runs", "run_cis", "comparison_metrics", "bootstrappable",
          "case_vectors", "BUILTIN_PER_CASE")

__all__ = ["stat_name", "CaseChange", "CaseDelta", "ComparisonError", "Delta", "Pairing", "case_deltas",
           "case_passed", "pair_cases", "pref_win_rate_f1", "regressions", *_HEAVY]


def __getattr__(name: str) -> Any:
    if name in _HEAVY:
        from pytest_genai.compare import comparison

        return getattr(comparison, name)
    raise AttributeError(f"module 'pytest_genai.compare' has no attribute {name!r}")
