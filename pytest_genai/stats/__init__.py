"""Statistics for comparisons: percentile bootstrap (numpy, imported on first use), McNemar's exact test, and the
two-sample KS statistic (monitoring drift)."""

from __future__ import annotations

from typing import Any

from pytest_genai.stats.ci import CI
from pytest_genai.stats.ks import ks_statistic
from pytest_genai.stats.mcnemar import McNemar, mcnemar_exact, mcnemar_from_pairs

_BOOTSTRAP = ("bootstrap_ci", "bootstrap_many", "paired_bootstrap_delta", "paired_bootstrap_many", "paired_bootstrap_tests",
              "PairedDelta", "statistic_for",
              "resample_indices", "AGGREGATION_STATISTICS", "Stat", "as_stat")

__all__ = ["CI", "ks_statistic", "McNemar", "mcnemar_exact", "mcnemar_from_pairs", *_BOOTSTRAP]


def __getattr__(name: str) -> Any:  # numpy only when a bootstrap is asked for
    if name in _BOOTSTRAP:
        from pytest_genai.stats import bootstrap

        return getattr(bootstrap, name)
    raise AttributeError(f"module 'pytest_genai.stats' has no attribute {name!r}")
