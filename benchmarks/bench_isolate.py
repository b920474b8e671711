"""What `eval.isolate: process` costs per case (issue "Durable runs", item 3: measure it). The same zero-latency
custom pipeline (tracking off, local run folder written) with `eval.isolate: none` and `process`, at two eval-set
sizes run interleaved: per case = the slope of (process - none) between the sizes; fixed = its intercept (the
first fork). No target: the number is for choosing."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _util import PY, alternate, median, record

SIZES = (200, 1000)
ROUNDS = 3


def _project(d: Path, n: int) -> None:
    d.mkdir()
    cases = [{"id": f"c{i}", "question": f"question {i}?", "answers": [f"a{i}"], "context": f"a{i} is it"} for i in range(n)]
    (d / "evals.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    for isolate in ("none", "process"):
        (d / f"genai.{isolate}.yaml").write_text(
            f"version: 1\npipeline: zero_pipe:factory\neval:\n  set: evals.jsonl\n  isolate: {isolate}\n"
            "tracking:\n  enabled: false\n  results_dir: runs\nenv:\n  lock_file: none.lock\n")


def main() -> dict[str, float]:
    common = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:anyio"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "zero_pipe.py").write_text("def factory(config):\n    return lambda case: case.context.split()[0]\n")
        commands: dict[str, list[str]] = {}
        for n in SIZES:
            _project(root / f"n{n}", n)
            for isolate in ("none", "process"):
                commands[f"{isolate}@{n}"] = common + ["--genai-config", str(root / f"n{n}" / f"genai.{isolate}.yaml"),
                                                       str(root / f"n{n}" / "evals.jsonl")]
        times = alternate(commands, root, ROUNDS, env={"PYTHONPATH": str(root)})
    med = {k: median(v) for k, v in times.items()}
    small, large = SIZES
    extra = [med[f"process@{n}"] - med[f"none@{n}"] for n in SIZES]
    slope = (extra[1] - extra[0]) / (large - small)
    out: dict[str, float] = {"sizes": list(SIZES), "rounds": ROUNDS}  # type: ignore[dict-item]
    for n in SIZES:
        out[f"none_s_{n}"] = med[f"none@{n}"]
        out[f"process_s_{n}"] = med[f"process@{n}"]
    out["isolate_per_case_ms"] = slope * 1000
    out["isolate_fixed_s"] = extra[0] - slope * small
    return out


if __name__ == "__main__":
    json.dump(record("isolate", main()), sys.stdout, indent=2)
    print()
