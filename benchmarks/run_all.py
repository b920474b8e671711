"""Runs every benchmark in one go (same machine state) and writes benchmarks/results.json."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_case_overhead  # noqa: E402
import bench_mlflow_logging  # noqa: E402
import bench_model_load  # noqa: E402
import bench_pii_detectors  # noqa: E402
import bench_providers  # noqa: E402
import bench_rag  # noqa: E402
import bench_startup  # noqa: E402


def main() -> None:
    results = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "startup": bench_startup.main(),
        "case_overhead": bench_case_overhead.main(),
        "mlflow_logging": bench_mlflow_logging.main(),
        "model_load": bench_model_load.main(),
        "providers": bench_providers.main(),
        "rag": bench_rag.main(),
        "pii_detectors": bench_pii_detectors.main(),
    }
    out = Path(__file__).resolve().parent / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
