"""Holm–Bonferroni adjustment of a family of p-values (Holm 1979): the step-down procedure that controls the
family-wise error rate under any dependence between the tests. Plain Python, no numpy.

Sorted ascending p(1) <= ... <= p(m), the adjusted p(i) is max over j <= i of min(1, (m - j + 1) p(j)): a test is
rejected at level alpha exactly when its adjusted p is <= alpha (the same verdicts as statsmodels'
`multipletests(p, method="holm")`, which tests/test_holm_power.py checks on 1,000 random families).
NaN p-values (a metric with no finite comparison) are not part of the family and stay NaN."""

from __future__ import annotations

import math
from typing import Mapping


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """{name: Holm-adjusted p} for a family {name: raw p}; the family is the finite p-values."""
    finite = {k: float(p) for k, p in p_values.items() if p is not None and math.isfinite(p)}
    for name, p in finite.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-value of {name} must be in [0, 1], got {p}")
    m = len(finite)
    order = sorted(finite, key=lambda k: (finite[k], k))  # ties: any order gives the same adjusted values
    out: dict[str, float] = {k: math.nan for k in p_values}
    running = 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (m - rank) * finite[name]))
        out[name] = running
    return out
