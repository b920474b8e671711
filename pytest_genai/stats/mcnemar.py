"""McNemar's exact test for paired pass/fail outcomes, in exact integer arithmetic (no scipy at runtime)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import comb
from typing import Any, Sequence


@dataclass(frozen=True)
class McNemar:
    """b: pairs only the candidate got right; c: pairs only the baseline got right; p: two-sided exact p-value."""

    b: int
    c: int
    p: float

    def to_dict(self) -> dict[str, Any]:
        return {"b": self.b, "c": self.c, "p": self.p}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact p-value: min(1, 2 P(X <= min(b, c))) with X ~ Bin(b + c, 1/2); 1.0 when there are no
    discordant pairs. The tail is summed as integers and divided once, so large counts lose no precision."""
    if isinstance(b, bool) or isinstance(c, bool) or int(b) != b or int(c) != c or b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative integers, got b={b!r}, c={c!r}")
    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** n)))


def mcnemar_from_pairs(cand: Sequence[bool], base: Sequence[bool]) -> McNemar:
    """Discordant counts of two aligned outcome vectors (True: right / passed) and their exact p-value."""
    if len(cand) != len(base):
        raise ValueError(f"paired outcomes need equal lengths, got {len(cand)} and {len(base)}")
    b = sum(1 for x, y in zip(cand, base) if bool(x) and not bool(y))
    c = sum(1 for x, y in zip(cand, base) if bool(y) and not bool(x))
    return McNemar(b, c, mcnemar_exact(b, c))
