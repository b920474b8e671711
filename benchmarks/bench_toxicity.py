"""Toxicity at batch speed: what `alt-profanity-check` adds per answer when each answer is scored alone
versus in one classifier call for a batch, through the `Guard` API the harness uses.

Variants, interleaved round by round on the same 200 synthetic answers (neutral sentences, some with PII,
a few abusive), median of the rounds:
- `pii_only`: `Guard.check(t, toxicity=False)` per answer (the PII flags the harness computes per case anyway);
- `per_text`: `Guard.check(t)` per answer (one classifier call per answer: what blocking on TOXICITY costs);
- `check_many`: `Guard.check_many(texts)` (PII per answer, one classifier call);
- `deferred`: `check(t, toxicity=False)` per answer, then one `add_toxicity` call (what the harness does
  when TOXICITY is not in `safety.block`).
Toxicity's added cost per answer is each variant minus `pii_only`. Also times, in fresh processes, the
classifier's first call (import of scikit-learn and the model), which `Guard.probe()` pays before the first case.
`.venv/bin/python benchmarks/bench_toxicity.py` writes the `toxicity` entry of results.json."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PY, REPO, median, record  # noqa: E402

sys.path.insert(0, str(REPO))
from pytest_genai.safety.guard import Guard  # noqa: E402
from pytest_genai.safety.toxicity import get_classifier  # noqa: E402

TEXTS = 200
ROUNDS = 5
LOAD_ROUNDS = 3
_SUBJECTS = ["The report", "Paris", "The capital of Italy", "Water", "The committee", "This function", "The invoice"]
_VERBS = ["is due on", "was founded in", "boils at", "returns", "was approved in", "is listed under", "covers"]
_OBJECTS = ["Friday.", "1889.", "100 degrees Celsius.", "a list of strings.", "the second quarter.", "section 4.", "two pages."]
_PII = ["Contact jane.doe@example.com for details.", "Call +1 415 555 0134 after five.", "My SSN is 123-45-6789."]
_ABUSIVE = ["You are a fucking idiot.", "Shut up, you stupid bitch.", "This is bullshit."]


def answers(n: int = TEXTS, seed: int = 0) -> list[str]:
    """Deterministic answers shaped like a model's: one or two sentences, ~8% with PII, ~4% abusive."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = " ".join(f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}" for _ in range(rng.randint(1, 2)))
        if i % 12 == 5:
            text += " " + rng.choice(_PII)
        if i % 25 == 7:
            text = rng.choice(_ABUSIVE) + " " + text
        out.append(text)
    return out


def _guard() -> Guard:
    return Guard(pii_types=("EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET"), classifier=get_classifier("profanity_check"),
                 threshold=0.5, critical=frozenset(), block=frozenset(), refusal="I can't share that.")


def _timed(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def _first_score_s() -> float:
    """Import + model load + first call, in a fresh process (what `Guard.probe()` takes at session start)."""
    code = ("import time; t = time.perf_counter()\n"
            "from pytest_genai.safety.toxicity import get_classifier\n"
            "get_classifier('profanity_check').scores(['ok']); print(time.perf_counter() - t)")
    proc = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> dict[str, object]:
    texts = answers()
    guard = _guard()
    guard.probe()
    variants = {
        "pii_only": lambda: [guard.check(t, toxicity=False) for t in texts],
        "per_text": lambda: [guard.check(t) for t in texts],
        "check_many": lambda: guard.check_many(texts),
        "deferred": lambda: guard.add_toxicity([guard.check(t, toxicity=False) for t in texts], texts),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    reference = None
    for _ in range(ROUNDS):
        for name, fn in variants.items():
            seconds, verdicts = _timed(fn)
            times[name].append(seconds)
            if name != "pii_only":  # every path gives the same verdicts, or the timing compares different work
                reference = reference or verdicts
                assert verdicts == reference, f"{name} disagrees with per_text"
    per_answer = {k: median(v) / len(texts) * 1000 for k, v in times.items()}
    load = [_first_score_s() for _ in range(LOAD_ROUNDS)]
    flagged = sum("TOXICITY" in v.flags for v in reference)  # type: ignore[union-attr]
    return {
        "texts": len(texts),
        "rounds": ROUNDS,
        "toxicity_flagged": flagged,
        "pii_only_ms_per_answer": per_answer["pii_only"],
        "per_text_ms_per_answer": per_answer["per_text"],
        "check_many_ms_per_answer": per_answer["check_many"],
        "deferred_ms_per_answer": per_answer["deferred"],
        "per_text_added_ms_per_answer": per_answer["per_text"] - per_answer["pii_only"],
        "check_many_added_ms_per_answer": per_answer["check_many"] - per_answer["pii_only"],
        "deferred_added_ms_per_answer": per_answer["deferred"] - per_answer["pii_only"],
        "speedup_per_text_over_deferred": per_answer["per_text"] / per_answer["deferred"],
        "first_score_median_s": median(load),
        "first_score_rounds": LOAD_ROUNDS,
        "times_s": times,
    }


if __name__ == "__main__":
    entry = record("toxicity", main())
    json.dump(entry, sys.stdout, indent=2)
    print()
