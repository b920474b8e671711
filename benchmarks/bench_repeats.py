"""What sampled repeats cost the harness (issue "Verdicts you can trust", item 1: measure the repeat overhead per
case). The model's own time per call comes on top, N times; this is what the harness adds around each call.

* In process, precise: 2,000 cases of a zero-latency seeded-coin pipeline through `scoring.run_case` (one run) and
  `repeats.run_sampled` (5 repeats, majority), redaction on as by default, median of interleaved rounds: per extra
  repeat = (5 repeats - once) / 4.
* End to end, for scale: the same pipeline on 1,000 cases through pytest (tracking off, the run folder written) with
  `--genai-repeat 1` and `5`, interleaved rounds (half the cases fail, on purpose: a coin).
No target: the numbers are for choosing N."""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _util import PY, alternate, median, record

from pytest_genai.repeats import Policy, run_sampled
from pytest_genai.sanitize import Sanitizer
from pytest_genai.scoring import run_case
from pytest_genai.types import Case

CASES = 2000
E2E_CASES = 1000
REPEATS = 5
ROUNDS = 5
E2E_ROUNDS = 3
PIPE = '''import random

def factory(config):
    def pipeline(case, seed):
        return "yes" if random.Random(seed).random() < 0.5 else "no"
    return pipeline
'''


def coin(case: Case, seed: int) -> str:
    return "yes" if random.Random(seed).random() < 0.5 else "no"


def in_process() -> dict[str, float]:
    cases = [Case(f"c{i}", f"question {i}?", ("yes",), expect={"contains": "yes"}) for i in range(CASES)]
    kw = dict(pricing=(0.0, 0.0), seed_globals=False, pass_seed=True, guard=None, sanitizer=Sanitizer(True, None, ()))
    once: list[float] = []
    many: list[float] = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for c in cases:
            run_case(coin, c, 7, repeat=1, **kw)
        once.append((time.perf_counter() - started) / CASES * 1000)
        started = time.perf_counter()
        for c in cases:
            run_sampled(coin, c, 7, repeat=REPEATS, policy=Policy("majority"), **kw)
        many.append((time.perf_counter() - started) / CASES * 1000)
    a, b = statistics.median(once), statistics.median(many)
    return {"case_once_ms": a, "case_repeated_ms": b, "per_extra_repeat_ms": (b - a) / (REPEATS - 1)}


def end_to_end() -> dict[str, float]:
    common = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:anyio"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "coin_pipe.py").write_text(PIPE)
        cases = [{"id": f"c{i}", "question": f"question {i}?", "answers": ["yes"], "expect": {"contains": "yes"}}
                 for i in range(E2E_CASES)]
        (root / "evals.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
        (root / "genai.yaml").write_text(
            "version: 1\npipeline: coin_pipe:factory\nllm:\n  temperature: 0.7\neval:\n  set: evals.jsonl\n"
            "  pass_policy: majority\ntracking:\n  enabled: false\n  results_dir: runs\nenv:\n  lock_file: none.lock\n")
        commands = {k: common + ["--genai-config", str(root / "genai.yaml"), "--genai-repeat", str(k),
                                 str(root / "evals.jsonl")] for k in (1, REPEATS)}
        times = alternate({f"r{k}": v for k, v in commands.items()}, root, E2E_ROUNDS, env={"PYTHONPATH": str(root)},
                          ok=(0, 1))
    return {f"e2e_repeat{k}_s": median(times[f"r{k}"]) for k in (1, REPEATS)}


def main() -> dict[str, float]:
    out: dict[str, float] = {"cases": CASES, "repeats": REPEATS, "rounds": ROUNDS, "e2e_cases": E2E_CASES}
    out.update(in_process())
    out.update(end_to_end())
    return out


if __name__ == "__main__":
    json.dump(record("repeats", main()), sys.stdout, indent=2)
    print()
