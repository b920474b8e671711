"""From served-request records (monitor/record.py, schema 1) to eval-set cases, as plain functions.

1. **Sanitize**, here and always with PII redaction on: the records may come from a sink written with
   `safety.redact: false`, and an eval set is a file that goes into git.
2. **Deduplicate exactly**: one case per question (lower-cased, white space collapsed); the group keeps how many
   requests asked it, and the member of the most telling stratum represents it (an error over a flag over a slow
   answer over an ordinary one; the earliest within a stratum).
3. **Stratify and sample** (seeded): errors, safety-flagged answers (any flag, blocked or critical) and slow
   requests (latency at or above the 90th percentile of the answered ones) each get up to `min_share` of the set,
   so rare kinds are represented; the rest is drawn from the ordinary requests, and a short stratum's places go to
   the others.
4. **Near-duplicates** (optional: `admit(texts)`, e.g. by embedding cosine, harvest/near.py): a question too close
   to one already chosen is passed over and the next of its stratum's pool taken instead.
5. **Cases**: id `h-` + the request id's first 12 characters; `answers`: the served answer, kept as the reference
   for a person to review (tag `review`), or `[]` when the request errored, was blocked or has no answer (tag
   `needs_expected`: the expected answer is left for a person to fill); `source`: served model name and version,
   LoggedModel id, request id, time and how many requests asked the question; `tags`: `harvested` and the stratum."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from pytest_genai.safety.pii import detect_secrets

STRATA = ("error", "flagged", "slow", "normal")  # most telling first
CHUNK = 64  # texts `admit` sees at once (one embedding batch)
Admit = Callable[[Sequence[str], int], "list[bool | None]"]
SLOW_QUANTILE = 0.9


class HarvestError(Exception):
    """Bad input for harvest; one line naming the file, flag or record."""


@dataclass(frozen=True)
class Candidate:
    """One distinct question and the request that represents it."""

    key: str
    record: Mapping[str, Any]
    stratum: str
    requests: int = 1


@dataclass(frozen=True)
class Harvest:
    cases: tuple[dict[str, Any], ...]
    records: int  # records read
    usable: int  # with a question
    distinct: int  # after exact deduplication
    by_stratum: Mapping[str, int]  # distinct questions per stratum
    chosen_by_stratum: Mapping[str, int]
    near_duplicates: int = 0  # dropped as near-duplicates
    notes: tuple[str, ...] = field(default=())


def question_key(text: str) -> str:
    return " ".join(text.lower().split())


def _latency(r: Mapping[str, Any]) -> float | None:
    v = r.get("latency_ms")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def slow_threshold(records: Sequence[Mapping[str, Any]]) -> float:
    """The latency at the 90th percentile of the answered requests (nearest rank); inf when none has one."""
    values = sorted(v for r in records if not r.get("error") and (v := _latency(r)) is not None)
    if not values:
        return math.inf
    return values[min(len(values) - 1, max(0, math.ceil(SLOW_QUANTILE * len(values)) - 1))]


def stratum_of(r: Mapping[str, Any], slow_ms: float) -> str:
    if r.get("error"):
        return "error"
    if r.get("safety_flags") or r.get("blocked") or r.get("critical"):
        return "flagged"
    latency = _latency(r)
    if latency is not None and latency >= slow_ms and math.isfinite(slow_ms):
        return "slow"
    return "normal"


def distinct_questions(records: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """Exact deduplication (see the module doc), in first-seen order."""
    slow_ms = slow_threshold(records)
    groups: dict[str, Candidate] = {}
    rank = {s: i for i, s in enumerate(STRATA)}
    for r in records:
        q = r.get("question")
        if not isinstance(q, str) or not q.strip():
            continue
        key, s = question_key(q), stratum_of(r, slow_ms)
        old = groups.get(key)
        if old is None:
            groups[key] = Candidate(key, r, s)
            continue
        better = rank[s] < rank[old.stratum] or (s == old.stratum and _ts(r) < _ts(old.record))
        groups[key] = Candidate(key, r if better else old.record, s if better else old.stratum, old.requests + 1)
    return list(groups.values())


def _ts(r: Mapping[str, Any]) -> float:
    v = r.get("ts")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.inf


def allocate(sizes: Mapping[str, int], n: int, min_share: float) -> dict[str, int]:
    """Places per stratum: each rare stratum up to ceil(min_share * n) (as many as it has), the ordinary ones the
    rest; places a stratum cannot fill go to the others in turn."""
    n = min(n, sum(sizes.values()))
    quota = math.ceil(min_share * n)
    take: dict[str, int] = {}
    for s in STRATA[:-1]:  # the rare strata, most telling first, never more places than the set has
        take[s] = min(sizes.get(s, 0), quota, n - sum(take.values()))
    take["normal"] = min(sizes.get("normal", 0), n - sum(take.values()))
    left = n - sum(take.values())
    while left > 0:  # places left over: one at a time to each stratum with questions to spare, in turn
        for s in STRATA:
            if left and take[s] < sizes.get(s, 0):
                take[s] += 1
                left -= 1
    return take


def select(candidates: Sequence[Candidate], n: int, *, seed: int, min_share: float = 0.2,
           admit: Admit | None = None) -> tuple[list[Candidate], int]:
    """The seeded stratified sample, and how many near-duplicates it passed over. `admit(texts, limit)`: for each
    text in turn, whether it is not a near-duplicate of one admitted before (it is then admitted), None once `limit`
    are admitted; the strata are walked most telling first, so of two near-duplicates the error is kept."""
    rng = random.Random(seed)
    rest = {s: [c for c in candidates if c.stratum == s] for s in STRATA}
    for pool in rest.values():
        rng.shuffle(pool)
    take = allocate({s: len(p) for s, p in rest.items()}, n, min_share)
    chosen: dict[str, list[Candidate]] = {s: [] for s in STRATA}
    dropped = 0

    def fill(s: str, want: int) -> int:
        """Admit up to `want` of stratum s's pool; the places it could not fill. `admit` sees the pool in chunks
        of at least CHUNK (one embedding batch) and stops at `want`: None marks the texts it did not reach."""
        nonlocal dropped
        while want > 0 and rest[s]:
            chunk = rest[s][:max(want, CHUNK)] if admit else rest[s][:want]
            ok = admit([str(c.record.get("question")) for c in chunk], want) if admit else [True] * len(chunk)
            reached = 0
            for c, good in zip(chunk, ok):
                if good is None:
                    break
                reached += 1
                if good:
                    chosen[s].append(c)
                    want -= 1
                else:
                    dropped += 1
            rest[s] = rest[s][reached:]
        return want

    short = sum(fill(s, take[s]) for s in STRATA)
    while short > 0 and any(rest.values()):  # places near-duplicates left empty: to the other strata in turn
        for s in STRATA:
            if short and rest[s]:
                short -= 1 - fill(s, 1)
    return [c for s in STRATA for c in chosen[s]], dropped


def _with_record_secrets(sanitizer: Any, *texts: Any) -> Any:
    """The sanitizer, also masking every secret value found anywhere in the record (a password detected after
    `password=` in the question is masked where the answer repeats it bare)."""
    found = tuple(dict.fromkeys(f.value for t in texts if isinstance(t, str) for f in detect_secrets(t)
                                if len(f.value) >= 4))
    return replace(sanitizer, secrets=tuple(sanitizer.secrets) + found) if found else sanitizer


def to_case(c: Candidate, sanitizer: Any) -> dict[str, Any]:
    r = c.record
    answer = r.get("answer")
    sanitizer = _with_record_secrets(sanitizer, r.get("question"), answer)
    unknown = bool(r.get("error") or r.get("blocked")) or not isinstance(answer, str) or not answer.strip()
    source = {"kind": "served", "model_name": r.get("model_name"), "model_version": r.get("model_version"),
              "model_id": r.get("model_id"), "request_id": r.get("request_id"), "time": r.get("time"),
              "requests": c.requests}
    case = {
        "id": "h-" + _id_part(r),
        "question": sanitizer.text(str(r["question"])),
        "answers": [] if unknown else [sanitizer.text(answer)],
        "tags": ["harvested", c.stratum, "needs_expected" if unknown else "review"],
        "source": {k: (sanitizer.text(v) if isinstance(v, str) and k in ("model_name",) else v)
                   for k, v in source.items() if v is not None},
    }
    return case


def _id_part(r: Mapping[str, Any]) -> str:
    raw = "".join(ch for ch in str(r.get("request_id") or "") if ch.isalnum())
    if not raw:
        raise HarvestError(f"a request record (time {r.get('time')!r}) has no usable request_id ({r.get('request_id')!r}): "
                           "each case is named after its request")
    return raw[:12]


def harvest(records: Sequence[Mapping[str, Any]], n: int, *, seed: int, sanitizer: Any, min_share: float = 0.2,
            admit: Admit | None = None) -> Harvest:
    """Records -> up to `n` cases (see the module doc). `sanitizer` must redact PII (the caller forces it on)."""
    if n < 1:
        raise HarvestError(f"--size must be at least 1 (got {n})")
    if not 0.0 <= min_share <= 1.0 / 3:
        raise HarvestError(f"--min-share must be between 0 and 1/3 (three rare strata), got {min_share}")
    candidates = distinct_questions(records)
    usable = sum(1 for r in records if isinstance(r.get("question"), str) and str(r.get("question")).strip())
    chosen, dropped = select(candidates, n, seed=seed, min_share=min_share, admit=admit)
    chosen.sort(key=lambda c: (_ts(c.record), str(c.record.get("request_id"))))
    cases = [to_case(c, sanitizer) for c in chosen]
    ids: dict[str, int] = {}
    for i, case in enumerate(cases):  # two request ids sharing 12 characters: lengthen the later one's
        if case["id"] in ids:
            cases[i] = {**case, "id": f"{case['id']}-{i}"}
        ids[cases[i]["id"]] = i
    count = {s: sum(c.stratum == s for c in candidates) for s in STRATA}
    picked = {s: sum(c.stratum == s for c in chosen) for s in STRATA}
    notes = []
    if len(cases) < n:
        why = (f"{len(candidates)} distinct question(s) in {len(records)} record(s)"
               + (f", {dropped} passed over as near-duplicates" if dropped else ""))
        notes.append(f"the set has {len(cases)} case(s), fewer than --size {n}: {why}")
    return Harvest(tuple(cases), len(records), usable, len(candidates), count, picked, dropped, tuple(notes))


def redacting(sanitizer: Any) -> Any:
    """The config's sanitizer with PII redaction on whatever `safety.redact` says (secrets are always masked)."""
    return replace(sanitizer, redact_pii=True, types=None)
