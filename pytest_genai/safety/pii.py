"""Offline, deterministic PII and secret detectors, and redaction with stable typed placeholders.

The detectors themselves (a shape and a validator per type, precision over recall) are in pii_detectors.py;
this module resolves their overlaps, makes placeholders and redacts.

A placeholder `<EMAIL:1a2b3c4d5e6f>` is itself detected as an EMAIL finding, so a metric computed on
redacted artifacts counts what it counted on the raw text, and `redact` is idempotent.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterator

from pytest_genai.metrics.text import normalize_answer
from pytest_genai.safety.pii_detectors import DETECTORS, phones, plain_email

PII_TYPES: tuple[str, ...] = ("EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET")

# On overlap the longer finding wins; on equal length the earlier type in this order (the more
# specific, checksum-validated shapes first). PHONE is resolved after all of them (see `detect`).
_RANK = {t: i for i, t in enumerate(("SECRET", "IBAN", "CARD", "SSN", "EMAIL", "IP"))}


@dataclass(frozen=True)
class Finding:
    """One detected value: `text[start:end] == value`."""

    type: str
    start: int
    end: int
    value: str


# --------------------------------------------------------------------------- placeholders

PLACEHOLDER_HEX = 12  # 48 bits: a chance collision becomes likely only around 16 million distinct values

# Up to 64 so that a longer (future) placeholder is still recognised, and redaction stays idempotent.
_PLACEHOLDER = re.compile(r"<(" + "|".join(PII_TYPES) + r"):([0-9a-f]{%d,64})>" % PLACEHOLDER_HEX)


def placeholder(type_: str, value: str, key: bytes | None = None) -> str:
    """`<TYPE:xxxxxxxxxxxx>`: the first 12 hex of HMAC-SHA256(key, v), or of sha256(v) unkeyed.

    `v` is the SQuAD-normalised value (`metrics.text.normalize_answer`), so values that EM counts
    as equal ("John.Doe@Example.com", "john.doe@example.com") get one placeholder and EM/F1 scores
    survive redaction. Unkeyed, a hash of a low-entropy value (an SSN, a known e-mail) can be
    confirmed by guessing: pass a secret `key` where that matters.
    """
    if type_ not in PII_TYPES:
        raise ValueError(f"unknown PII type {type_!r}; known: {', '.join(PII_TYPES)}")
    if type_ == "EMAIL":  # URL-encoded or obfuscated (`jane at example dot com`): the plain address's placeholder
        value = plain_email(value)
    raw = (normalize_answer(value) or value).encode("utf-8")
    digest = hmac.new(key, raw, hashlib.sha256).hexdigest() if key is not None else hashlib.sha256(raw).hexdigest()
    return f"<{type_}:{digest[:PLACEHOLDER_HEX]}>"


def is_placeholder(value: str) -> bool:
    return _PLACEHOLDER.fullmatch(value) is not None


# --------------------------------------------------------------------------- API

def _check_types(types: Collection[str] | None) -> tuple[str, ...]:
    if types is None:
        return PII_TYPES
    unknown = sorted(set(types) - set(PII_TYPES))
    if unknown:
        raise ValueError(f"unknown PII type(s) {unknown}; known: {', '.join(PII_TYPES)}")
    return tuple(t for t in PII_TYPES if t in types)


def detect(text: str, types: Collection[str] | None = None) -> list[Finding]:
    """Findings of the given types (all of `PII_TYPES` by default), non-overlapping, sorted by start.

    Placeholders left by `redact` count as findings of their type. Where candidates overlap, the
    placeholder wins, then the longer span, then the more specific type (SECRET, IBAN, CARD, SSN,
    EMAIL, IP); PHONE, the loosest shape, only takes what the others left. `types` only filters:
    a type's findings do not depend on which other types were asked for.

    Findings are then masked the way placeholders would mask them and the text is searched again
    until nothing new turns up, so a value whose neighbour was a finding (`+1-202-555-0183+44 20
    7946 0958`) is judged as it will be once that neighbour is redacted: `detect(redact(t))` counts
    the same findings as `detect(t)`.
    """
    selected = _check_types(types)
    findings = _find_all(text)
    return findings if len(selected) == len(PII_TYPES) else [f for f in findings if f.type in selected]


def detect_secrets(text: str) -> list[Finding]:
    """The SECRET findings only, from the SECRET detector alone: what `safety.redact: false` still masks (a key is
    never kept). Cheaper than `detect(text, ["SECRET"])`, and no finding of another type can hide a key."""
    return [f for f in _find_all(text, {"SECRET": DETECTORS["SECRET"]}) if f.type == "SECRET"]


_Candidate = tuple[int, int, int, str, int, int]  # sort key (placeholder first, longer, rank), type, span


def _find_all(text: str, detectors: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = DETECTORS) -> list[Finding]:
    starts: list[int] = []  # the taken spans, disjoint, kept sorted by start
    ends: list[int] = []
    placeholders: list[_Candidate] = [(0, 0, 0, m.group(1), m.start(), m.end()) for m in _PLACEHOLDER.finditer(text)]
    findings = _select(text, placeholders, starts, ends)
    view = text  # the text with the findings so far masked
    while True:
        new: list[Finding] = []
        for group in (detectors, {"PHONE": phones} if detectors is DETECTORS else {}):
            candidates: list[_Candidate] = [
                (1, s - e, _RANK.get(type_, len(_RANK)), type_, s, e)
                for type_, detector in group.items() for s, e in detector(view) if e > s
            ]
            got = _select(text, candidates, starts, ends)
            if got:
                view = _mask(view, got)
                new += got
        if not new:
            break
        findings += new
    findings.sort(key=lambda f: f.start)
    return findings


def _mask(text: str, findings: list[Finding]) -> str:
    """Each finding replaced, at the same length, by `<###>`: a placeholder's edges without its letters."""
    chars = list(text)
    for f in findings:
        n = f.end - f.start
        chars[f.start:f.end] = "<" + "#" * (n - 2) + ">" if n > 1 else "#"
    return "".join(chars)


def _select(text: str, candidates: list[_Candidate],
            starts: list[int], ends: list[int]) -> list[Finding]:
    """Greedy in priority order; `starts`/`ends` hold the spans already taken (disjoint, sorted)."""
    candidates.sort()
    findings: list[Finding] = []
    for *_, type_, start, end in candidates:
        i = bisect.bisect_right(starts, start)
        if (i and ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
            continue
        starts.insert(i, start)
        ends.insert(i, end)
        findings.append(Finding(type_, start, end, text[start:end]))
    return findings


def redact(text: str, types: Collection[str] | None = None, *, key: bytes | None = None) -> str:
    """`text` with every finding replaced by its placeholder (see `placeholder`); idempotent."""
    out: list[str] = []
    pos = 0
    for f in detect(text, types):
        out.append(text[pos:f.start])
        out.append(f.value if is_placeholder(f.value) else placeholder(f.type, f.value, key))
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def redact_obj(obj: Any, types: Collection[str] | None = None, *, key: bytes | None = None) -> Any:
    """A copy of `obj` with every string redacted, through dicts, lists, tuples and sets.

    Dict keys are kept as they are (they name fields); numbers and other scalars are returned
    unchanged, so a card number stored as an int is not seen.
    """
    _check_types(types)
    if isinstance(obj, str):
        return redact(obj, types, key=key)
    if isinstance(obj, dict):
        return {k: redact_obj(v, types, key=key) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_obj(v, types, key=key) for v in obj]
    if isinstance(obj, tuple):
        items = [redact_obj(v, types, key=key) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(redact_obj(v, types, key=key) for v in obj)
    return obj
