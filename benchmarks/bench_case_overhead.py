"""Target: harness overhead per case under 1 ms above plain pytest running the same number of parametrized
tests, with a zero-latency custom pipeline and the bundled safety defaults (PII flags and redaction on): once with
tracking off (local run folder only) and once with tracking on (one MLflow run with a trace per case, logged to a
pre-migrated sqlite store, MLflow's import included).

A session's overhead is a fixed part (the plugin's set-up, MLflow's import and store, the run-level logging)
plus a part per case. Both are measured, from two eval-set sizes run interleaved: the per-case part is the slope
(extra seconds between the two sizes over the extra cases), the fixed part the intercept. The per-case part is
the target; the fixed part is reported beside it, and so is the plain ratio (overhead / cases) at each size.
Wave 3 target (issue "the house", item 7): with tracking on, <= 0.5 ms per case."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _util import PY, alternate, median, record

SIZES = (1000, 5000)
ROUNDS = 3


def _project(d: Path, n: int) -> None:
    d.mkdir()
    cases = [{"id": f"c{i}", "question": f"question {i}?", "answers": [f"a{i}"], "context": f"a{i} is it"} for i in range(n)]
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
    (d / "plain").mkdir()
    (d / "plain" / "test_plain.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('i', range(%d))\ndef test_case(i):\n"
        "    assert ('a%%d is it' %% i).split()[0] == 'a%%d' %% i\n" % n)


def main() -> dict[str, float]:
    common = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:anyio"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n in SIZES:
            _project(root / f"n{n}", n)
        commands: dict[str, list[str]] = {}
        for n in SIZES:
            d = root / f"n{n}"
            commands[f"plain@{n}"] = common + [str(d / "plain")]
            commands[f"genai@{n}"] = common + ["--genai-config", str(d / "genai.yaml"), str(d / "evals.jsonl")]
            commands[f"tracked@{n}"] = common + ["--genai-config", str(d / "genai.tracked.yaml"), str(d / "evals.jsonl")]
        times = alternate(commands, root, ROUNDS, env={"PYTHONPATH": str(root / f"n{SIZES[0]}"),  # zero_pipe
                                                        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"})
    med = {k: median(v) for k, v in times.items()}
    small, large = SIZES
    out: dict[str, float] = {"sizes": list(SIZES), "rounds": ROUNDS}  # type: ignore[dict-item]
    for n in SIZES:
        out[f"plain_pytest_s_{n}"] = med[f"plain@{n}"]
        for v in ("genai", "tracked"):
            out[f"{v}_s_{n}"] = med[f"{v}@{n}"]
            out[f"{v}_overhead_ratio_ms_{n}"] = (med[f"{v}@{n}"] - med[f"plain@{n}"]) / n * 1000
    for v in ("genai", "tracked"):
        extra = [med[f"{v}@{n}"] - med[f"plain@{n}"] for n in SIZES]
        slope = (extra[1] - extra[0]) / (large - small)
        out[f"{v}_per_case_ms"] = slope * 1000
        out[f"{v}_fixed_s"] = extra[0] - slope * small
    return out


if __name__ == "__main__":
    json.dump(record("case_overhead", main()), sys.stdout, indent=2)
    print()
