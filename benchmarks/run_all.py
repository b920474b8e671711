"""`make bench`: runs every benchmark in one go (same machine state), records each in benchmarks/results.json as
soon as it finishes (with this command and its time), then renders the tables from results.json (render.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_bootstrap  # noqa: E402
import bench_case_overhead  # noqa: E402
import bench_dryrun  # noqa: E402
import bench_harvest  # noqa: E402
import bench_install  # noqa: E402
import bench_isolate  # noqa: E402
import bench_journal  # noqa: E402
import bench_mlflow_logging  # noqa: E402
import bench_merge  # noqa: E402
import bench_model_load  # noqa: E402
import bench_monitor  # noqa: E402
import bench_pii_detectors  # noqa: E402
import bench_providers  # noqa: E402
import bench_rag  # noqa: E402
import bench_release  # noqa: E402
import bench_repeats  # noqa: E402
import bench_report  # noqa: E402
import bench_reproduce  # noqa: E402
import bench_server_logging  # noqa: E402
import bench_show  # noqa: E402
import bench_startup  # noqa: E402
import bench_toxicity  # noqa: E402
import render  # noqa: E402
from _util import REPO, command_line, record  # noqa: E402

BENCHMARKS = {
    "startup": bench_startup.main,
    "case_overhead": bench_case_overhead.main,
    "isolate": bench_isolate.main,
    "repeats": bench_repeats.main,
    "journal": bench_journal.main,
    "mlflow_logging": bench_mlflow_logging.main,
    "show": bench_show.main,
    "model_load": bench_model_load.main,
    "providers": bench_providers.main,
    "rag": bench_rag.main,
    "pii_detectors": bench_pii_detectors.main,
    "toxicity": bench_toxicity.main,
    "release": bench_release.main,
    "bootstrap": bench_bootstrap.main,
    "server_logging": bench_server_logging.main,
    "monitor": bench_monitor.main,
    "report": bench_report.main,
    "merge": bench_merge.main,
    "reproduce": bench_reproduce.main,
    "install": bench_install.main,
    "harvest": bench_harvest.main,
    "dryrun": bench_dryrun.main,
}


def main() -> None:
    command = command_line()
    for name, run in BENCHMARKS.items():
        print(f"== {name}", flush=True)
        entry = record(name, run(), command=command)
        print(f"   recorded at {entry['when']}", flush=True)
    sys.exit(render.main(["--docs", str(REPO / "docs" / "benchmarks.md")]))


if __name__ == "__main__":
    main()
