"""Per-case pairing of a candidate run with its baseline: matched cases, per-case deltas, regressed and improved
cases, and the F1 preference judge. Pure functions over CaseResults; no numpy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pytest_genai.types import CaseResult

SHOWN_IDS = 5  # ids named in an error message


class ComparisonError(ValueError):
    """The two runs cannot be compared as asked (different cases, different eval sets, nothing shared)."""


@dataclass(frozen=True)
class Pairing:
    """Cases matched by id, in the candidate's order; the ids only one side has (empty unless intersecting)."""

    pairs: tuple[tuple[CaseResult, CaseResult], ...]
    only_candidate: tuple[str, ...] = ()
    only_baseline: tuple[str, ...] = ()
    intersect: bool = False

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(c.id for c, _ in self.pairs)

    @property
    def candidate(self) -> list[CaseResult]:
        return [c for c, _ in self.pairs]

    @property
    def baseline(self) -> list[CaseResult]:
        return [b for _, b in self.pairs]


def _shown(ids: Sequence[str]) -> str:
    head = ", ".join(ids[:SHOWN_IDS])
    return head + (f", … ({len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else "")


def _by_id(results: Sequence[CaseResult], side: str) -> dict[str, CaseResult]:
    out: dict[str, CaseResult] = {}
    dup = []
    for r in results:
        if r.id in out:
            dup.append(r.id)
        out[r.id] = r
    if dup:
        raise ComparisonError(f"the {side} has {len(dup)} duplicate case id(s): {_shown(dup)}")
    return out


def pair_cases(candidate: Sequence[CaseResult], baseline: Sequence[CaseResult], *, intersect: bool) -> Pairing:
    """Match cases by id. Different id sets are refused unless `intersect` (then only the shared ids are paired)."""
    base = _by_id(baseline, "baseline")
    cand = _by_id(candidate, "candidate")
    only_c = tuple(i for i in cand if i not in base)
    only_b = tuple(i for i in base if i not in cand)
    if (only_c or only_b) and not intersect:
        parts = []
        if only_c:
            parts.append(f"{len(only_c)} only in the candidate ({_shown(only_c)})")
        if only_b:
            parts.append(f"{len(only_b)} only in the baseline ({_shown(only_b)})")
        raise ComparisonError(f"the candidate ({len(cand)} cases) and the baseline ({len(base)} cases) hold different "
                              f"cases: {'; '.join(parts)}; compare on the shared case ids with --genai-baseline-intersect")
    pairs = tuple((c, base[c.id]) for c in cand.values() if c.id in base)
    if not pairs:
        raise ComparisonError(f"the candidate ({len(cand)} cases) and the baseline ({len(base)} cases) share no case id")
    return Pairing(pairs, only_c, only_b, intersect)


def case_passed(r: CaseResult) -> bool:
    """The case's pytest item passed: no error and no failed `expect` (mirrors items.CaseItem.runtest)."""
    return r.error is None and not r.expect_failures


def _num(x: Any) -> float | None:
    if x is None:
        return None
    value = float(x)
    return None if math.isnan(value) else value


# The per-case measurements compared case by case; a case's `scores` are added after these.
PER_CASE: Mapping[str, Callable[[CaseResult], "float | None"]] = {
    "passed": lambda r: float(case_passed(r)),
    "em": lambda r: r.em,
    "f1": lambda r: r.f1,
    "context_used": lambda r: r.context_used,
    "hit_at_k": lambda r: r.hit_at_k,
    "recall_at_k": lambda r: r.recall_at_k,
    "reciprocal_rank": lambda r: r.reciprocal_rank,
    "latency_ms": lambda r: r.latency_ms,
    "input_tokens": lambda r: r.input_tokens,
    "output_tokens": lambda r: r.output_tokens,
    "cost_usd": lambda r: r.cost_usd,
    "safety_flags": lambda r: None if r.safety_flags is None else len(r.safety_flags),
    "blocked": lambda r: r.blocked if r.safety_flags is not None else None,
}


@dataclass(frozen=True)
class Delta:
    candidate: float | None
    baseline: float | None

    @property
    def delta(self) -> float | None:
        """candidate - baseline; None when either side has no value for this case."""
        if self.candidate is None or self.baseline is None:
            return None
        return self.candidate - self.baseline

    def to_dict(self) -> dict[str, float | None]:
        return {"candidate": self.candidate, "baseline": self.baseline, "delta": self.delta}


@dataclass(frozen=True)
class CaseDelta:
    """One paired case: every per-case measurement on both sides (score keys that collide with a built-in
    measurement are named `scores.<key>`)."""

    id: str
    question: str
    candidate_answer: str | None
    baseline_answer: str | None
    metrics: Mapping[str, Delta] = field(default_factory=dict)

    def value(self, name: str, side: str) -> float | None:
        d = self.metrics.get(name)
        return None if d is None else getattr(d, side)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "candidate_answer": self.candidate_answer,
                "baseline_answer": self.baseline_answer, "metrics": {k: v.to_dict() for k, v in self.metrics.items()}}


def _score_name(key: str) -> str:
    return f"scores.{key}" if key in PER_CASE else key


def case_deltas(pairing: Pairing, names: Sequence[str] | None = None, *, scores: bool = True) -> list[CaseDelta]:
    """Per paired case, candidate and baseline value (and delta) of every per-case measurement (or of `names`,
    from PER_CASE) and, with `scores`, of every key of the cases' `scores`."""
    unknown = [n for n in names or () if n not in PER_CASE]
    if unknown:
        raise ValueError(f"unknown per-case measurement(s) {', '.join(unknown)} (known: {', '.join(PER_CASE)})")
    getters = [(n, PER_CASE[n]) for n in (PER_CASE if names is None else names)]
    out = []
    for c, b in pairing.pairs:
        metrics = {name: Delta(_num(get(c)), _num(get(b))) for name, get in getters}
        if scores:
            for key in list(c.scores) + [k for k in b.scores if k not in c.scores]:
                metrics[_score_name(key)] = Delta(_num(c.scores.get(key)), _num(b.scores.get(key)))
        out.append(CaseDelta(c.id, c.question, c.answer, b.answer, metrics))
    return out


@dataclass(frozen=True)
class CaseChange:
    """A case that regressed (or improved): why, most severe first."""

    id: str
    reasons: tuple[str, ...]
    case: CaseDelta
    severity: tuple[int, int, float] = (1, 1, 0.0)  # (not a pass flip, not an EM flip, -|F1 change|): sorts first

    def to_dict(self) -> dict[str, Any]:
        c = self.case
        keep = ("passed", "em", "f1")
        return {"id": self.id, "reasons": list(self.reasons), "question": c.question,
                "candidate_answer": c.candidate_answer, "baseline_answer": c.baseline_answer,
                **{k: c.metrics[k].to_dict() for k in keep if k in c.metrics}}


def _change(d: CaseDelta, f1_drop: float, worse: bool) -> CaseChange | None:
    """The regression (worse=True) or the improvement (worse=False) of one case, if any."""
    before, after = ("baseline", "candidate")
    def flipped(name: str) -> bool:
        b, a = d.value(name, before), d.value(name, after)
        if b is None or a is None:
            return False
        return (b >= 1.0 and a < 1.0) if worse else (b < 1.0 and a >= 1.0)

    reasons = []
    pass_flip, em_flip = flipped("passed"), flipped("em")
    if pass_flip:
        reasons.append("pass → fail" if worse else "fail → pass")
    if em_flip:
        reasons.append("EM 1 → 0" if worse else "EM 0 → 1")
    f1_b, f1_a = d.value("f1", before), d.value("f1", after)
    change = 0.0
    if f1_b is not None and f1_a is not None:
        change = (f1_b - f1_a) if worse else (f1_a - f1_b)
        if change > f1_drop + 1e-9:
            reasons.append(f"F1 {f1_b:.2f} → {f1_a:.2f} ({f1_a - f1_b:+.2f})")
    if not reasons:
        return None
    return CaseChange(d.id, tuple(reasons), d, (0 if pass_flip else 1, 0 if em_flip else 1, -max(change, 0.0)))


def regressions(deltas: Sequence[CaseDelta], f1_drop: float = 0.2) -> tuple[list[CaseChange], list[CaseChange]]:
    """(regressed, improved): pass→fail, EM 1→0, F1 lower by more than `f1_drop` (and the mirrored improvements),
    each sorted by severity: pass flips first, then EM flips, then by the size of the F1 change (then case order).
    A case can be in both lists (it started failing an `expect` while its F1 rose)."""
    if not 0.0 <= f1_drop <= 1.0:
        raise ValueError(f"f1_drop must be in [0, 1], got {f1_drop!r}")
    regressed = [c for d in deltas if (c := _change(d, f1_drop, worse=True)) is not None]
    improved = [c for d in deltas if (c := _change(d, f1_drop, worse=False)) is not None]
    return sorted(regressed, key=lambda c: c.severity), sorted(improved, key=lambda c: c.severity)


def f1_preference(candidate: CaseResult, baseline: CaseResult) -> float:
    """The F1 judge on one pair: 1 when the candidate's F1 against gold beats the baseline's, 0.5 on a tie, else 0
    (an errored case scores F1 0). The LLM judge scores a pair it cannot show (an answer missing) with it too."""
    return 1.0 if candidate.f1 > baseline.f1 else 0.5 if candidate.f1 == baseline.f1 else 0.0


def pref_win_rate_f1(pairing: Pairing) -> tuple[float, tuple[float, ...]]:
    """The F1 judge: per case 1 when the candidate's F1 against gold beats the baseline's, 0.5 on a tie, else 0.
    Returns the mean and the per-case win vector (for a bootstrap CI); NaN for no pairs."""
    wins = tuple(f1_preference(c, b) for c, b in pairing.pairs)
    return (sum(wins) / len(wins) if wins else math.nan), wins
