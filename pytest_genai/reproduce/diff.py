"""The case-by-case and aggregate difference between a run and its re-run. Pure functions over run records.

What is compared is everything a re-run on the same inputs must give again: per case the answer, the retrieved
ids, every score, tokens, cost, safety verdicts, errors; per run every aggregate. Wall-clock time is not: it is
never identical (latency per case, the latency_* aggregates and any metric whose unit is time), and neither is
how an answer was obtained (`cached`, the provider's system fingerprint) nor what only a baseline comparison
computes (deltas, McNemar p-values, pref_win_rate). env_drift is the environment's, reported apart."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pytest_genai.compare.names import KINDS
from pytest_genai.compare.pairing import PER_CASE, ComparisonError, pair_cases
from pytest_genai.runlog import RunRecord
from pytest_genai.types import CaseResult

TIME_UNITS = ("ms", "s", "seconds")
NOT_REPRODUCED = ("env_drift", "pref_win_rate")  # the environment's (see the env report); a baseline's
_BASELINE_KINDS = tuple(k for k in KINDS if k.startswith("delta") or k == "mcnemar_p")
_NOT_PER_CASE = ("latency_ms", "safety_flags")  # time; and a count where the flags themselves are compared


def _last_line(text: str | None) -> str | None:
    """An error as its message: the traceback frames above it name the folders the run happened in."""
    if text is None:
        return None
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _retrieved(r: CaseResult) -> tuple[tuple[Any, Any, Any], ...]:
    """The retrieved chunks in rank order, by id, and whether each went into the prompt (scores are floats a
    BLAS build may round differently; the ids and the answer say whether retrieval reproduced)."""
    return tuple((x.get("doc_id"), x.get("chunk_id"), x.get("used")) for x in r.retrieved)


def _repeats(r: CaseResult) -> Any:
    """Sampled repeats' verdicts, seeds, answers and score spreads (the spread of latency is time, not what)."""
    if not r.repeats:
        return None
    spread = {k: v for k, v in (r.repeats.get("spread") or {}).items() if k != "latency_ms"}
    return {**r.repeats, "spread": spread}


# Per-case fields beyond the numeric measurements of compare.pairing.PER_CASE (latency excluded).
_FIELDS: Mapping[str, Callable[[CaseResult], Any]] = {
    "answer": lambda r: r.answer,
    "error": lambda r: _last_line(r.error),
    **{name: get for name, get in PER_CASE.items() if name not in _NOT_PER_CASE},
    "retrieved": _retrieved,
    "safety_flags": lambda r: None if r.safety_flags is None else tuple(r.safety_flags),
    "critical": lambda r: r.critical,
    "toxicity": lambda r: r.toxicity,
    "expect_failures": lambda r: tuple(r.expect_failures),
    "outputs_agree": lambda r: r.outputs_agree,
    "pass_rate": lambda r: r.pass_rate,
    "flip": lambda r: r.flip,
    "repeats": lambda r: _repeats(r),
    "seed": lambda r: r.seed,
    "question": lambda r: r.question,
    "gold": lambda r: tuple(r.answers),
    "prompt": lambda r: r.prompt,
}
TIME_FIELDS = ("latency_ms", "timings", "started_ms")  # per case: when and how long, never identical
HOW_FIELDS = ("cached", "system_fingerprint", "metadata")  # per case: how an answer was obtained, not what it is
NOT_COMPARED_PER_CASE = TIME_FIELDS + HOW_FIELDS


@dataclass(frozen=True)
class Change:
    """One field (or metric) whose value differs: the run's and the re-run's."""

    name: str
    old: Any
    new: Any


@dataclass(frozen=True)
class CaseDiff:
    id: str
    changes: tuple[Change, ...] = ()
    only: str = ""  # "run": the re-run has no result for it; "rerun": the run had none


@dataclass(frozen=True)
class RunDiff:
    cases_compared: int
    cases: tuple[CaseDiff, ...]  # only the differing ones, in the run's case order
    metrics_compared: tuple[str, ...]
    metrics: tuple[Change, ...] = ()
    metrics_not_compared: tuple[str, ...] = field(default=())

    @property
    def identical(self) -> bool:
        return not self.cases and not self.metrics


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def case_fields(r: CaseResult) -> dict[str, Any]:
    """Every compared value of one case: the fields above and each entry of `scores` (as `scores.<key>`)."""
    out = {name: get(r) for name, get in _FIELDS.items()}
    out.update({f"scores.{k}": v for k, v in r.scores.items()})
    return out


def diff_case(old: CaseResult, new: CaseResult) -> tuple[Change, ...]:
    a, b = case_fields(old), case_fields(new)
    return tuple(Change(k, a.get(k), b.get(k)) for k in list(a) + [k for k in b if k not in a]
                 if not _same(a.get(k), b.get(k)))


def _split_kind(name: str) -> tuple[str, str]:
    for kind in sorted(KINDS, key=len, reverse=True):
        if name.endswith("_" + kind):
            return name[: -len(kind) - 1], kind
    return name, ""


def compared_metric(name: str, units: Mapping[str, str]) -> bool:
    """An aggregate a re-run must reproduce: not wall-clock time, not the environment's, not a baseline's."""
    base, kind = _split_kind(name)
    if kind in _BASELINE_KINDS or base in NOT_REPRODUCED or name in NOT_REPRODUCED:
        return False
    return not (base.startswith("latency_") or units.get(base) in TIME_UNITS or units.get(name) in TIME_UNITS)


def diff_runs(old: RunRecord, new: RunRecord) -> RunDiff:
    """Cases paired by id (the run's order); every compared aggregate of either side."""
    cases: list[CaseDiff] = []
    compared = 0
    try:
        pairing = pair_cases(new.results, old.results, intersect=True)
        pairs = {o.id: (o, n) for n, o in pairing.pairs}
        only_old, only_new = pairing.only_baseline, pairing.only_candidate
    except ComparisonError:  # no shared case id at all
        pairs, only_old, only_new = {}, tuple(r.id for r in old.results), tuple(r.id for r in new.results)
    missing = set(only_old)
    for r in old.results:
        if r.id in missing:
            cases.append(CaseDiff(r.id, only="run"))
        elif r.id in pairs:
            compared += 1
            changes = diff_case(*pairs[r.id])
            if changes:
                cases.append(CaseDiff(r.id, changes))
    cases += [CaseDiff(i, only="rerun") for i in only_new]
    units = {**dict(old.metric_units), **dict(new.metric_units)}
    names = list(old.metrics) + [m for m in new.metrics if m not in old.metrics]
    kept = tuple(m for m in names if compared_metric(m, units))
    changed = tuple(Change(m, old.metrics.get(m), new.metrics.get(m)) for m in kept
                    if not _same(old.metrics.get(m), new.metrics.get(m)))
    return RunDiff(compared, tuple(cases), kept, changed, tuple(m for m in names if m not in kept))


def show(value: Any, width: int = 80) -> str:
    """A value as printed in a difference: floats to 6 significant digits, long texts cut."""
    if value is None:
        return "(none)"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def change_text(c: Change) -> str:
    old, new = show(c.old), show(c.new)
    if old == new:  # they differ beyond 6 digits or beyond the cut: show them whole
        old, new = repr(c.old), repr(c.new)
    return f"{c.name} {old} → {new}"


FIELDS_SHOWN = 6  # differing fields named per case; the rest are counted


def case_lines(diff: RunDiff, top: int = 20) -> list[str]:
    """The differing cases (at most `top`), each with the fields that differ, old → new."""
    lines = []
    for d in diff.cases[:top]:
        if d.only == "run":
            lines.append(f"  {d.id}: in the run, not in the re-run")
        elif d.only == "rerun":
            lines.append(f"  {d.id}: in the re-run, not in the run")
        else:
            shown = "; ".join(change_text(c) for c in d.changes[:FIELDS_SHOWN])
            rest = d.changes[FIELDS_SHOWN:]
            lines.append(f"  {d.id}: {shown}" + (f"; and {', '.join(c.name for c in rest)}" if rest else ""))
    if len(diff.cases) > top:
        lines.append(f"  … and {len(diff.cases) - top} more")
    return lines


def _fold(names: Sequence[str]) -> dict[str, list[str]]:
    """Metric names grouped under their base metric (`f1_ci_low` under `f1`), in order."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(_split_kind(name)[0], []).append(name)
    return out


def metric_lines(diff: RunDiff) -> list[str]:
    """One line per differing aggregate; its CI bounds folded into it when they differ too."""
    by_name = {c.name: c for c in diff.metrics}
    lines = []
    for base, names in _fold([c.name for c in diff.metrics]).items():
        head = by_name.get(base)
        bounds = [n for n in names if n != base]
        if head is None:
            lines += [f"  {change_text(by_name[n])}" for n in bounds]
        else:
            lines.append(f"  {change_text(head)}" + (" (its CI too)" if bounds else ""))
    return lines


def not_compared_note(diff: RunDiff) -> str:
    """What was left out and why, in one clause."""
    groups = _fold(diff.metrics_not_compared)
    timing = [b for b in groups if b not in NOT_REPRODUCED and _split_kind(groups[b][0])[1] not in _BASELINE_KINDS]
    parts = [f"per case {', '.join(TIME_FIELDS)}" + (f" and {', '.join(timing)} (with their CIs)" if timing else "")
             + ": wall-clock time is never identical",
             f"{', '.join(HOW_FIELDS)}: how an answer was obtained, not what it is"]
    if "env_drift" in groups:
        parts.append("env_drift: see env above")
    if any(b not in timing and b != "env_drift" for b in groups):
        parts.append("baseline comparisons (deltas, pref_win_rate): a re-run has no baseline")
    return "not compared: " + "; ".join(parts)


def provenance_changes(old: RunRecord, new: RunRecord) -> list[Change]:
    """What the re-run was built from, against what the run recorded (config, prompt, eval set, index, models)."""
    a, b = old.provenance, new.provenance
    pairs: Sequence[tuple[str, Any, Any]] = (
        ("config_hash", a.config_hash, b.config_hash), ("pipeline", a.pipeline, b.pipeline), ("seed", a.seed, b.seed),
        ("prompt", f"{a.prompt_id}@{a.prompt_version}" if a.prompt_id else None,
         f"{b.prompt_id}@{b.prompt_version}" if b.prompt_id else None),
        ("prompt.hash", a.prompt_hash, b.prompt_hash), ("eval_set.hash", a.eval_set_hash, b.eval_set_hash),
        ("index.fingerprint", a.index_fingerprint, b.index_fingerprint),
        *((k, a.model_hashes.get(k), b.model_hashes.get(k)) for k in sorted({*a.model_hashes, *b.model_hashes})),
        ("pytest_genai_version", a.pytest_genai_version, b.pytest_genai_version),
    )
    return [Change(k, x, y) for k, x, y in pairs if not _same(x, y)]


def short(value: Any) -> str:
    """A hash cut to 12 characters, other values as they are."""
    if isinstance(value, str) and len(value) == 64 and all(ch in "0123456789abcdef" for ch in value):
        return value[:12]
    return show(value)


def index_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """What differs between two index manifests' fingerprint inputs: documents added, removed or edited, settings,
    library versions. Empty when the fingerprints are equal or a manifest is missing."""
    if not old or not new or old.get("fingerprint") == new.get("fingerprint"):
        return []
    a, b = dict(old.get("inputs") or {}), dict(new.get("inputs") or {})
    docs_a = {d[0]: d[1] for d in a.pop("corpus", []) or []}
    docs_b = {d[0]: d[1] for d in b.pop("corpus", []) or []}
    out = []
    edited = sorted(i for i in docs_a if i in docs_b and docs_a[i] != docs_b[i])
    removed = sorted(i for i in docs_a if i not in docs_b)
    added = sorted(i for i in docs_b if i not in docs_a)
    for what, ids in (("edited", edited), ("not in the project's corpus", removed), ("new in the project's corpus", added)):
        if ids:
            out.append(f"corpus: {len(ids)} document(s) {what}: {', '.join(ids[:5])}" + (" …" if len(ids) > 5 else ""))
    for key in sorted({*a, *b}):
        if not _same(a.get(key), b.get(key)):
            out.append(f"{key} {show(a.get(key))} → {show(b.get(key))}")
    return out
