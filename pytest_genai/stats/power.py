"""What an eval set of this size can see: the minimum detectable effect (MDE) of a paired comparison.

For a paired difference with standard error SE, a two-sided test at level alpha (the one bound of a two-sided
CI a gate reads) detects a true difference of MDE = (z(1 - alpha/2) + z(power)) * SE with probability `power`.
For a mean over n paired cases SE = sd(differences) / sqrt(n): the observed spread of the per-case differences
and the eval set's size. Defaults: alpha 0.05 (compare.confidence 0.95), power 0.8. Plain Python (NormalDist)."""

from __future__ import annotations

import math
from statistics import NormalDist

POWER = 0.8  # the power the minimum detectable effect is quoted at


def z_sum(confidence: float = 0.95, power: float = POWER) -> float:
    """z(1 - alpha/2) + z(power), alpha = 1 - confidence: 2.8016 for 0.95 and 0.8."""
    if not 0.0 < confidence < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"confidence and power must be in (0, 1), got {confidence}, {power}")
    unit = NormalDist()
    return unit.inv_cdf(1.0 - (1.0 - confidence) / 2.0) + unit.inv_cdf(power)


def mde_from_se(se: float, confidence: float = 0.95, power: float = POWER) -> float:
    """The smallest true difference detected with probability `power` given the estimate's standard error."""
    if se is None or not math.isfinite(se) or se < 0:
        return math.nan
    return z_sum(confidence, power) * se


MIN_PAIRS = 10  # fewer pairs cannot estimate the spread of the differences: their MDE is infinite


def mde_paired_mean(sd: float, n: int, confidence: float = 0.95, power: float = POWER) -> float:
    """MDE of a mean of n paired differences whose sample standard deviation is `sd`; infinite below MIN_PAIRS
    pairs (3 identical differences have sd 0, yet say nothing about what the set can detect)."""
    if n < MIN_PAIRS:
        return math.inf
    if sd is None or not math.isfinite(sd):
        return math.nan
    return mde_from_se(sd / math.sqrt(n), confidence, power)


def negligible(mde: float, *scale: float) -> float:
    """`mde`, or 0 when it is floating-point noise next to the values compared (a cost that dropped by exactly the
    same amount on every case has differences whose spread is 1e-22, not a real one)."""
    size = max((abs(x) for x in scale if x is not None and math.isfinite(x)), default=0.0)
    return 0.0 if math.isfinite(mde) and mde <= 1e-9 * size else mde
