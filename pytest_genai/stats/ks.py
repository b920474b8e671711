"""The two-sample Kolmogorov-Smirnov statistic: how far apart two samples' distributions are (0: the same
empirical distribution, 1: disjoint), pure Python. A drift signal that needs no binning and no scale."""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """sup over x of |F_a(x) - F_b(x)| for the empirical CDFs (ties counted at their value, as scipy's
    `ks_2samp` does). Both samples must be non-empty."""
    if not a or not b:
        raise ValueError("ks_statistic needs two non-empty samples")
    xs, ys = sorted(a), sorted(b)
    return max(abs(bisect_right(xs, v) / len(xs) - bisect_right(ys, v) / len(ys)) for v in set(xs) | set(ys))
