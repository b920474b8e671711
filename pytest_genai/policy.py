"""`eval.pass_policy`: how many of a case's sampled repeats must pass for the case to pass (pytest_genai/repeats.py
applies it). Plain and light: config validation reads it too, to say what to write instead of a bad value."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

POLICIES = ("all", "majority")
FORMS = "all, majority or {k_of_n: [k, n]} (at least k of the n repeats)"


class PolicyError(ValueError):
    """An `eval.pass_policy` that cannot be applied; the message says what to write instead."""


@dataclass(frozen=True)
class Policy:
    """How many of n repeats must pass for the case to pass."""

    name: str  # all | majority | k_of_n
    k: int = 0
    n: int = 0

    def needed(self, n: int) -> int:
        if self.name == "all":
            return n
        if self.name == "majority":
            return n // 2 + 1
        return self.k

    def passes(self, verdicts: Sequence[bool]) -> bool:
        return sum(bool(v) for v in verdicts) >= self.needed(len(verdicts))

    def __str__(self) -> str:
        return f"k_of_n [{self.k}, {self.n}]" if self.name == "k_of_n" else self.name


def parse_policy(value: Any, repeats: int | None = None) -> Policy:
    """`eval.pass_policy` (None: all); with `repeats`, a k_of_n's n must be it. PolicyError: what is wrong and what
    to write."""
    if value is None or value == "all":
        return Policy("all")
    if value == "majority":
        return Policy("majority")
    if isinstance(value, str):
        hint = next(iter(difflib.get_close_matches(value.lower(), POLICIES, n=1, cutoff=0.6)), None)
        raise PolicyError(f"{value!r} is not a policy" + (f" — did you mean {hint!r}?" if hint else f": write {FORMS}"))
    if isinstance(value, Mapping) and set(value) == {"k_of_n"}:
        kn = value["k_of_n"]
        if (isinstance(kn, (list, tuple)) and len(kn) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in kn) and 1 <= kn[0] <= kn[1]):
            k, n = int(kn[0]), int(kn[1])
            if repeats is not None and n != repeats:
                raise PolicyError(f"k_of_n [{k}, {n}] counts {n} repeats, but this session runs {repeats} "
                                  f"(--genai-repeat / eval.repeat): make them equal")
            return Policy("k_of_n", k, n)
        raise PolicyError(f"k_of_n takes [k, n], two whole numbers with 1 <= k <= n (like [2, 3]), got {kn!r}")
    raise PolicyError(f"{value!r} is not a policy: write {FORMS}")


def policy_problem(value: Any) -> str:
    """Why a value is not a policy (config validation's message)."""
    try:
        parse_policy(value)
    except PolicyError as exc:
        return str(exc)
    return f"write {FORMS}"
