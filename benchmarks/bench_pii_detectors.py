"""Quality and speed of the offline PII/secret detectors on the labelled sample.

Quality is a string-level multilabel count on `pytest_genai/safety/data/pii_labelled.jsonl`: for each
string and type, TP when the type is labelled and detected, FP when detected but not labelled, FN when
labelled but not detected (how many findings, and their spans, are not scored); the same per kind of secret
(`kinds` of a SECRET row, against `pii_secrets.secret_kind` of each SECRET finding). Throughput is `detect`
over the whole sample, all types, median of 5 runs. Also checks the redaction contract on every string:
`detect(redact(t))` flags the same types as many times as `detect(t)`, and `redact` is idempotent.
Prints a markdown report and writes it to `benchmarks/pii_detectors.md`; run alone, it records the
`pii_detectors` entry of results.json."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_genai.safety.pii import PII_TYPES, detect, redact  # noqa: E402
from pytest_genai.safety.pii_secrets import SECRET_KINDS, secret_kind  # noqa: E402

DATA = REPO / "pytest_genai" / "safety" / "data" / "pii_labelled.jsonl"
OUT = Path(__file__).resolve().parent / "pii_detectors.md"
RUNS = 5


def load() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def detected_kinds(text: str) -> set[str]:
    """The kinds of the SECRET findings in `text`."""
    kinds = {secret_kind(text, f.start, f.end) for f in detect(text) if f.type == "SECRET"}
    return {k for k in kinds if k is not None}


def _count(counts: dict[str, Counter], names: tuple[str, ...], gold: set[str], got: set[str]) -> None:
    for t in names:
        key = {(True, True): "tp", (False, True): "fp", (True, False): "fn"}.get((t in gold, t in got))
        if key:
            counts[t][key] += 1


def _table(counts: dict[str, Counter], total: str | None) -> dict[str, dict[str, float | int | None]]:
    table: dict[str, dict[str, float | int | None]] = {}
    rows = [*counts.items(), *([(total, sum(counts.values(), Counter()))] if total else [])]
    for name, c in rows:
        p, r = _ratio(c["tp"], c["tp"] + c["fp"]), _ratio(c["tp"], c["tp"] + c["fn"])
        f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
        table[name] = {"support": c["tp"] + c["fn"], "tp": c["tp"], "fp": c["fp"], "fn": c["fn"],
                       "precision": p, "recall": r, "f1": f1}
    return table


def score(rows: list[dict]) -> tuple[dict[str, dict[str, float | int | None]], list[tuple[str, set[str], set[str]]]]:
    """Per type (and the micro average), and the strings whose type set or kinds of secret differ from the labels
    (a secret's kinds shown as `SECRET:KIND`)."""
    counts = {t: Counter() for t in PII_TYPES}
    errors = []
    for row in rows:
        gold, got = set(row["labels"]), {f.type for f in detect(row["text"])}
        _count(counts, PII_TYPES, gold, got)
        gold_kinds, got_kinds = set(row.get("kinds", ())), detected_kinds(row["text"])
        if gold != got or gold_kinds != got_kinds:
            errors.append((row["text"], gold - {"SECRET"} | {f"SECRET:{k}" for k in gold_kinds},
                           got - {"SECRET"} | {f"SECRET:{k}" for k in got_kinds}))
    return _table(counts, "micro avg"), errors


def score_kinds(rows: list[dict]) -> dict[str, dict[str, float | int | None]]:
    """Per kind of secret: a secret found under another kind is a miss of its kind and a false alarm of the other
    (the SECRET row of `score` says whether it was found at all)."""
    counts = {k: Counter() for k in SECRET_KINDS}
    for row in rows:
        _count(counts, SECRET_KINDS, set(row.get("kinds", ())), detected_kinds(row["text"]))
    return _table(counts, None)


def redaction_violations(rows: list[dict]) -> int:
    bad = 0
    for row in rows:
        t = row["text"]
        r = redact(t)
        before, after = Counter(f.type for f in detect(t)), Counter(f.type for f in detect(r))
        bad += before != after or redact(r) != r
    return bad


def throughput(rows: list[dict]) -> dict[str, float]:
    texts = [row["text"] for row in rows]
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        for t in texts:
            detect(t)
        times.append(time.perf_counter() - started)
    med = statistics.median(times)
    chars = sum(map(len, texts))
    return {"strings_per_s": len(texts) / med, "chars_per_s": chars / med, "run_s_median": med}


def _fmt(x: float | int | None) -> str:
    return "–" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def _rows(table: dict[str, dict[str, float | int | None]]) -> list[str]:
    return [f"| {name} | {m['support']} | {m['tp']} | {m['fp']} | {m['fn']} | "
            f"{_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} |" for name, m in table.items()]


def report(rows: list[dict]) -> tuple[str, dict]:
    table, errors = score(rows)
    kinds = score_kinds(rows)
    speed = throughput(rows)
    violations = redaction_violations(rows)
    exact = sum(1 for row in rows if {f.type for f in detect(row["text"])} == set(row["labels"]))
    lines = [
        "# PII detectors: precision, recall, throughput",
        "",
        f"Sample: `{DATA.relative_to(REPO)}`, {len(rows)} strings "
        f"({sum(1 for r in rows if not r['labels'])} with no label). "
        f"Produced by `.venv/bin/python benchmarks/bench_pii_detectors.py` "
        f"({time.strftime('%Y-%m-%d')}, {platform.machine()}, Python {platform.python_version()}).",
        "",
        "String-level multilabel counts: TP when a type is labelled and detected in a string, FP when detected",
        "but not labelled, FN when labelled but not detected.",
        "",
        "| type | support | TP | FP | FN | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *_rows(table),
        "",
        f"Strings whose detected type set equals the label set: {exact}/{len(rows)}.",
        f"Redaction contract (`detect(redact(t))` counts per type equal `detect(t)`'s, `redact` idempotent): "
        f"{len(rows) - violations}/{len(rows)} strings hold.",
        "",
        f"Throughput (`detect`, all types, whole sample, median of {RUNS} runs): "
        f"**{speed['strings_per_s']:,.0f} strings/s** ({speed['chars_per_s'] / 1e6:.2f} M chars/s).",
        "",
        "## Secrets per kind",
        "",
        "The same counts per kind of secret: each SECRET string is labelled with the kinds it holds (`kinds`; a value",
        "of several kinds, such as `token=ghp_...` or a JWT after `Bearer`, with the most specific one, first in",
        "`pii_secrets.SECRET_KINDS`), and each SECRET finding gets the kind of the detector that proposed its span",
        "(`pii_secrets.secret_kind`). A secret found under another kind counts as a miss of its own kind and a false",
        "alarm of the other, though it is masked all the same (the SECRET row above counts it as found).",
        "",
        "| kind | support | TP | FP | FN | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *_rows(kinds),
        "",
        "## Strings the detectors get wrong",
        "",
        "| text | labelled | detected |",
        "|---|---|---|",
    ]
    for text, gold, got in errors:
        shown = text if len(text) <= 90 else text[:87] + "..."
        shown = shown.replace("|", "\\|").replace("\n", "⏎")
        lines.append(f"| {shown} | {', '.join(sorted(gold)) or '–'} | {', '.join(sorted(got)) or '–'} |")
    if not errors:
        lines.append("| (none) | | |")
    results = {"per_type": table, "per_kind": kinds, "exact_set_match": exact, "strings": len(rows),
               "redaction_violations": violations, **speed}
    return "\n".join(lines) + "\n", results


def main() -> dict:
    md, results = report(load())
    OUT.write_text(md, encoding="utf-8")
    print(md)
    return results


if __name__ == "__main__":
    from _util import record

    record("pii_detectors", main())
