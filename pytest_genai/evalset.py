"""Eval sets: JSONL, one case a line, validated with line numbers and hashed by content."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_genai.input_limits import InputLimitError, check_json_line
from pytest_genai.types import Case

REQUIRED = ("id", "question", "answers")
OPTIONAL = ("context", "gold_doc_ids", "tags", "expect", "source")  # source: where a case came from (harvest)
EXPECT_KEYS = ("contains", "not_contains", "regex", "min_f1")


class EvalSetError(Exception):
    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"invalid eval set ({len(problems)} problem(s)):\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class EvalSet:
    path: Path
    cases: tuple[Case, ...]
    sha256: str
    raw: bytes

    def __len__(self) -> int:
        return len(self.cases)


def load_eval_set(path: Path) -> EvalSet:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvalSetError(path, [f"{path}: cannot read eval set: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8-sig")  # a BOM is tolerated; bad bytes are an error, not U+FFFD
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise EvalSetError(path, [f"{path}:{line}: not valid UTF-8 ({exc.reason} at byte {exc.start})"]) from None
    problems: list[str] = []
    cases: list[Case] = []
    first_line: dict[str, int] = {}
    # split on "\n" only: str.splitlines() would also split inside JSON strings holding U+2028
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            check_json_line(line, path, lineno)  # too long, or nested deep enough to overflow the decoder
            obj = json.loads(line)
        except InputLimitError as exc:
            problems.append(str(exc))
            continue
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except ValueError as exc:  # a number past Python's digit limit
            problems.append(f"{where}: not valid JSON ({exc})")
            continue
        case, errs = _parse_case(obj, lineno)
        problems += [f"{where}: {e}" for e in errs]
        if case is None:
            continue
        if case.id in first_line:
            problems.append(f"{where}: duplicate id {case.id!r} (first on line {first_line[case.id]})")
            continue
        first_line[case.id] = lineno
        cases.append(case)
    if not cases and not problems:
        problems.append(f"{path}: the eval set has no cases")
    if problems:
        raise EvalSetError(path, problems)
    return EvalSet(path, tuple(cases), hashlib.sha256(raw).hexdigest(), raw)


def _parse_case(obj: Any, lineno: int) -> tuple[Case | None, list[str]]:
    if not isinstance(obj, dict):
        return None, ["each line must be a JSON object"]
    errs: list[str] = []
    for key in REQUIRED:
        if key not in obj:
            errs.append(f"missing required field {key!r}")
    unknown = sorted(set(obj) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        errs.append(f"unknown field(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(REQUIRED + OPTIONAL)})")
    if errs:
        return None, errs
    cid, question, answers = obj["id"], obj["question"], obj["answers"]
    if not isinstance(cid, str) or not cid or not re.fullmatch(r"[A-Za-z0-9_.\-]+", cid):
        errs.append(f"'id' must be a non-empty string of letters, digits, '_', '-' or '.' (got {cid!r})")
    if not isinstance(question, str) or not question.strip():
        errs.append("'question' must be a non-empty string")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        errs.append("'answers' must be a list of strings (the gold answers)")
    context = obj.get("context")
    if context is not None and not isinstance(context, str):
        errs.append("'context' must be a string")
    for key in ("gold_doc_ids", "tags"):
        if key in obj and (not isinstance(obj[key], list) or not all(isinstance(x, str) for x in obj[key])):
            errs.append(f"{key!r} must be a list of strings")
    source = obj.get("source")
    if source is not None and (not isinstance(source, dict)
                               or not all(v is None or isinstance(v, (str, int, float)) for v in source.values())):
        errs.append("'source' must be an object of plain values (where the case came from: model, request id, time)")
    expect = obj.get("expect", {})
    errs += _check_expect(expect)
    if errs:
        return None, errs
    return Case(
        id=cid,
        question=question,
        answers=tuple(answers),
        context=context,
        gold_doc_ids=tuple(obj.get("gold_doc_ids", ())),
        tags=tuple(obj.get("tags", ())),
        expect=expect,
        line=lineno,
    ), []


def _check_expect(expect: Any) -> list[str]:
    if not isinstance(expect, dict):
        return ["'expect' must be an object"]
    errs = [f"unknown expect key {k!r} (allowed: {', '.join(EXPECT_KEYS)})" for k in expect if k not in EXPECT_KEYS]
    for key in ("contains", "not_contains"):
        value = expect.get(key)
        if value is not None and not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            errs.append(f"expect.{key} must be a string or a list of strings")
    if "regex" in expect:
        try:
            re.compile(expect["regex"])
        except (re.error, TypeError) as exc:
            errs.append(f"expect.regex is not a valid regular expression: {exc}")
    if "min_f1" in expect and not (isinstance(expect["min_f1"], (int, float)) and 0 <= expect["min_f1"] <= 1):
        errs.append("expect.min_f1 must be a number between 0 and 1")
    return errs


def check_expect(expect: Any, answer: str, f1: float) -> list[str]:
    """The per-case assertions that failed, as readable sentences."""
    failures: list[str] = []
    low = answer.lower()
    for needle in _as_list(expect.get("contains")):
        if needle.lower() not in low:
            failures.append(f"expected the answer to contain {needle!r}")
    for needle in _as_list(expect.get("not_contains")):
        if needle.lower() in low:
            failures.append(f"expected the answer not to contain {needle!r}")
    if "regex" in expect and not re.search(expect["regex"], answer):
        failures.append(f"expected the answer to match /{expect['regex']}/")
    if "min_f1" in expect and f1 < expect["min_f1"]:
        failures.append(f"expected f1 >= {expect['min_f1']} (got {f1:.3f})")
    return failures


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
