"""The one place comparison metric names are built (MLflow metric keys, comparison.json, terminal)."""

from __future__ import annotations

KINDS = ("ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high", "delta_p", "delta_p_holm", "delta_mde",
         "mcnemar_p")


def stat_name(metric: str, kind: str) -> str:
    """`f1`, `ci_low` -> `f1_ci_low`; kind "" or "value" is the metric itself (e.g. `pref_win_rate`).
    McNemar's p-values are named after what flips: `stat_name("em", "mcnemar_p")` -> `em_mcnemar_p`."""
    if kind in ("", "value"):
        return metric
    if kind not in KINDS:
        raise ValueError(f"unknown statistic kind {kind!r} (known: {', '.join(KINDS)})")
    return f"{metric}_{kind}"
