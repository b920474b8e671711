"""Target: `reproduce` of the bundled example costs no more than the eval itself plus 5 s.

The bundled RAG example on its first four questions (pytest_genai/testing/example_project.py: SmolLM2 greedy,
MiniLM retrieval over the handbook), on a sqlite store. A first session logs the run; then, interleaved round by
round, the eval as a user runs it (`pytest --genai-config genai.yaml`, logged to MLflow) and `reproduce` of that
first run from its run folder and from its MLflow run id (download, env and git checks, the temporary project,
the re-run in a fresh process with tracking off, the diff). Each reproduce must exit 0 (every case and metric
identical) or the benchmark fails. The difference of the medians is what reproducing adds to the eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _util import PY, alternate, example_env, median, record

from pytest_genai.testing.example_project import copy_example

ROUNDS = 3
CASES = 4


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "example"
        path.mkdir()
        copy_example(path, model_name="bench-reproduce", cases=CASES, experiment="reproduce")
        uri = f"sqlite:///{path / 'mlflow.db'}"
        env = example_env(uri)
        eval_cmd = [PY, "-m", "pytest", "--genai-config", "genai.yaml", "-q", "-p", "no:cacheprovider"]
        first = subprocess.run(eval_cmd, cwd=path, env={**os.environ, **env}, capture_output=True, text=True)
        runs = sorted((path / ".pytest-genai" / "runs").iterdir()) if (path / ".pytest-genai" / "runs").is_dir() else []
        if first.returncode != 0 or not runs:
            raise RuntimeError(f"the first session failed:\n{first.stdout[-3000:]}\n{first.stderr[-2000:]}")
        run_dir = runs[-1]
        run_id = json.loads((run_dir / "run.json").read_text("utf-8"))["tracking"]["run_id"]
        if not run_id:
            raise RuntimeError(f"the first session was not logged to MLflow:\n{first.stdout[-3000:]}")
        reproduce = [PY, "-m", "pytest_genai.cli", "reproduce"]  # = `pytest-genai reproduce`
        times = alternate({"eval": eval_cmd,
                           "reproduce_run_dir": [*reproduce, str(run_dir), "--project", "."],
                           "reproduce_mlflow_run": [*reproduce, run_id, "--project", ".", "--tracking-uri", uri]},
                          path, ROUNDS, env)
    return {
        "eval_median_s": median(times["eval"]),
        "reproduce_run_dir_median_s": median(times["reproduce_run_dir"]),
        "reproduce_mlflow_run_median_s": median(times["reproduce_mlflow_run"]),
        "reproduce_run_dir_added_s": median(times["reproduce_run_dir"]) - median(times["eval"]),
        "reproduce_mlflow_run_added_s": median(times["reproduce_mlflow_run"]) - median(times["eval"]),
        "rounds": ROUNDS, "cases": CASES,
    }


if __name__ == "__main__":
    json.dump(record("reproduce", main()), sys.stdout, indent=2)
    print()
