"""Target: harness overhead per case under 1 ms above plain pytest running the same number of
parametrized tests, with a zero-latency custom pipeline and the bundled safety defaults (PII flags and
redaction on): once with tracking off (local run folder only) and once with tracking on (one MLflow run
logged to a pre-migrated sqlite store, MLflow's import included)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _util import PY, alternate, median, record

N = 2000
ROUNDS = 5


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cases = [{"id": f"c{i}", "question": f"question {i}?", "answers": [f"a{i}"], "context": f"a{i} is it"} for i in range(N)]
        (d / "evals.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
        (d / "zero_pipe.py").write_text("def factory(config):\n    return lambda case: case.context.split()[0]\n")
        (d / "genai.yaml").write_text(
            "version: 1\npipeline: zero_pipe:factory\neval:\n  set: evals.jsonl\n"
            "tracking:\n  enabled: false\n  results_dir: runs\nenv:\n  lock_file: none.lock\n")
        (d / "genai.tracked.yaml").write_text(
            "version: 1\npipeline: zero_pipe:factory\neval:\n  set: evals.jsonl\n"
            "tracking:\n  uri: sqlite:///store.db\n  experiment: bench\n  results_dir: runs\nenv:\n  lock_file: none.lock\n")
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=f"sqlite:///{d / 'store.db'}").search_experiments()  # migrations, not timed
        plain = d / "plain"
        plain.mkdir()
        (plain / "test_plain.py").write_text(
            "import pytest\n\n@pytest.mark.parametrize('i', range(%d))\ndef test_case(i):\n"
            "    assert ('a%%d is it' %% i).split()[0] == 'a%%d' %% i\n" % N)
        common = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:anyio"]
        times = alternate({
            "plain": common + ["plain"],
            "genai": common + ["--genai-config", "genai.yaml", "evals.jsonl"],
            "genai_tracked": common + ["--genai-config", "genai.tracked.yaml", "evals.jsonl"],
        }, d, ROUNDS, env={"PYTHONPATH": str(d), "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"})
    p, g, t = median(times["plain"]), median(times["genai"]), median(times["genai_tracked"])
    return {"cases": N, "plain_pytest_s": p, "genai_s": g, "genai_tracked_s": t,
            "overhead_per_case_ms": (g - p) / N * 1000, "tracked_overhead_per_case_ms": (t - p) / N * 1000,
            "rounds": ROUNDS}


if __name__ == "__main__":
    json.dump(record("case_overhead", main()), sys.stdout, indent=2)
    print()
