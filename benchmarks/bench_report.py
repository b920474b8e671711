"""Target: the HTML report of a 10,000-case run is written in under 2 s.

Builds the same 10,000-case run folder as bench_mlflow_logging.py (a real session's record), reads its record
back, then times `write_report` (render the page from the record and write report.html), the step the session adds
before MLflow is contacted. Median of ROUNDS in one warm process; the file's size is recorded too."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _util import record
from bench_mlflow_logging import N, build_run_dir

ROUNDS = 5


def main() -> dict[str, float]:
    from pytest_genai.report.html import REPORT_FILE
    from pytest_genai.runlog import read_run
    from pytest_genai.tracking.local import write_report

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = build_run_dir(Path(tmp))
        run = read_run(run_dir, with_results=True)
        if len(run.results) != N:
            raise RuntimeError(f"expected {N} cases, read {len(run.results)}")
        times = []
        for _ in range(ROUNDS):
            (run_dir / REPORT_FILE).unlink()
            started = time.perf_counter()
            write_report(run_dir, run)
            times.append(time.perf_counter() - started)
        size = (run_dir / REPORT_FILE).stat().st_size
    return {"cases": N, "report_median_s": statistics.median(times), "report_min_s": min(times),
            "report_max_s": max(times), "report_mb": size / 1e6, "rounds": ROUNDS}


if __name__ == "__main__":
    json.dump(record("report", main()), sys.stdout, indent=2)
    print()
