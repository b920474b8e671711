"""Target: `pytest-genai show` under 0.5 s for a 10,000-case run folder.

Builds the same 10,000-case run folder as bench_mlflow_logging.py, then times the whole command in a
fresh process (interpreter start-up, imports, reading run.json and results.jsonl, rendering the table)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import record
from bench_mlflow_logging import N, build_run_dir

ROUNDS = 5


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = build_run_dir(Path(tmp))
        times = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "pytest_genai.cli", "show", str(run_dir)], capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            if "cases_total" not in proc.stdout:
                raise RuntimeError(f"show printed no table: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return {"cases": N, "show_median_s": statistics.median(times), "show_min_s": min(times), "rounds": ROUNDS}


if __name__ == "__main__":
    json.dump(record("show", main()), sys.stdout, indent=2)
    print()
