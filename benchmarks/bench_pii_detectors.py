"""Quality and speed of the offline PII/secret detectors on the labelled sample.

Quality is a string-level multilabel count on `pytest_genai/safety/data/pii_labelled.jsonl`: for each
string and type, TP when the type is labelled and detected, FP when detected but not labelled, FN when
labelled but not detected (how many findings, and their spans, are not scored). Throughput is `detect`
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

DATA = REPO / "pytest_genai" / "safety" / "data" / "pii_labelled.jsonl"
OUT = Path(__file__).resolve().parent / "pii_detectors.md"
RUNS = 5


def load() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def score(rows: list[dict]) -> tuple[dict[str, dict[str, float | int | None]], list[tuple[str, set[str], set[str]]]]:
    counts = {t: Counter() for t in PII_TYPES}
    errors = []
    for row in rows:
        gold, got = set(row["labels"]), {f.type for f in detect(row["text"])}
        for t in PII_TYPES:
            key = {(True, True): "tp", (False, True): "fp", (True, False): "fn"}.get((t in gold, t in got))
            if key:
                counts[t][key] += 1
        if gold != got:
            errors.append((row["text"], gold, got))
    table: dict[str, dict[str, float | int | None]] = {}
    for name, c in [*counts.items(), ("micro avg", sum(counts.values(), Counter()))]:
        p, r = _ratio(c["tp"], c["tp"] + c["fp"]), _ratio(c["tp"], c["tp"] + c["fn"])
        f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
        table[name] = {"support": c["tp"] + c["fn"], "tp": c["tp"], "fp": c["fp"], "fn": c["fn"],
                       "precision": p, "recall": r, "f1": f1}
    return table, errors


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


def report(rows: list[dict]) -> tuple[str, dict]:
    table, errors = score(rows)
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
    ]
    for name, m in table.items():
        lines.append(f"| {name} | {m['support']} | {m['tp']} | {m['fp']} | {m['fn']} | "
                     f"{_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} |")
    lines += [
        "",
        f"Strings whose detected type set equals the label set: {exact}/{len(rows)}.",
        f"Redaction contract (`detect(redact(t))` counts per type equal `detect(t)`'s, `redact` idempotent): "
        f"{len(rows) - violations}/{len(rows)} strings hold.",
        "",
        f"Throughput (`detect`, all types, whole sample, median of {RUNS} runs): "
        f"**{speed['strings_per_s']:,.0f} strings/s** ({speed['chars_per_s'] / 1e6:.2f} M chars/s).",
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
    results = {"per_type": table, "exact_set_match": exact, "strings": len(rows),
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
