"""The confidence interval value type: plain data, no numpy, so gates and reports can hold one cheaply."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CI:
    """A percentile-bootstrap interval around `point` (the statistic of the observed cases).

    `half_width` is (high - low) / 2: what the eval set can resolve; `n` is how many cases (or pairs) the
    statistic was computed over after dropping the ones where it does not apply (NaN)."""

    low: float
    high: float
    point: float
    half_width: float
    n: int = 0

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.low, self.high, self.point))

    def excludes(self, value: float = 0.0) -> bool:
        """True when `value` lies outside [low, high] (for a delta CI: the change is not noise at this level)."""
        return self.finite and (value < self.low or value > self.high)

    def to_dict(self) -> dict[str, Any]:
        def plain(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"low": plain(self.low), "high": plain(self.high), "point": plain(self.point),
                "half_width": plain(self.half_width), "n": self.n}


NAN_CI = CI(math.nan, math.nan, math.nan, math.nan, 0)
