"""Target: MLflow logging at session end for 10,000 cases under 2 s on a migrated sqlite store.

Builds a real run folder (results, renders, snapshot) for 10,000 cases, then times
`log_run_dir` (experiment lookup, run creation, batched params/metrics/tags, artifacts)."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _util import REPO, record

N = 10_000
ROUNDS = 5


def build_run_dir(root: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from pytest_genai.config import load_config
    from pytest_genai.publish import html_report
    from pytest_genai.record import capture_env
    from pytest_genai.session import EvalSession
    from pytest_genai.tracking.local import new_run_dir, write_run_dir
    from pytest_genai.types import CaseResult

    cases = [{"id": f"c{i}", "question": f"What is item {i}?", "answers": [f"answer {i}"], "context": f"Item {i} is answer {i}."} for i in range(N)]
    (root / "evals.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    (root / "genai.yaml").write_text("version: 1\npipeline: x:y\neval:\n  set: evals.jsonl\ngates:\n  f1: '>= 0.5'\n"
                                     "tracking:\n  results_dir: runs\nenv:\n  lock_file: %s\n" % (REPO / "requirements.lock"))
    session = EvalSession.from_config(load_config(root / "genai.yaml"))
    for i, c in enumerate(session.eval_set.cases):
        session.add_result(CaseResult(c.id, c.question, f"answer {i}", c.answers, 1.0, 1.0, 12.5, 40, 3, 0.0001, i,
                                      prompt=f"Context: {c.context}\nQ: {c.question}"))
    env, git = capture_env(session.config)
    record = session.finish(env, git, enforce=True)
    run_dir = new_run_dir(root / "runs", session.config.hash)
    write_run_dir(run_dir, session, record, env, render_report=html_report)
    return run_dir


def set_traces(run_dir: Path, on: bool) -> None:
    """tracking.traces in the run folder's resolved config: what `log_run_dir` reads."""
    resolved = run_dir / "config.resolved.yaml"
    config = yaml.safe_load(resolved.read_text())
    config.setdefault("tracking", {})["traces"] = on
    resolved.write_text(yaml.safe_dump(config))


def main() -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    from pytest_genai.runlog import Tracking, read_run, write_record
    from pytest_genai.tracking.mlflow_store import log_run_dir

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = root / "template.db"
        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()  # migrations, not timed
        run_dir = build_run_dir(root)
        size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(ROUNDS):
            for traces in (False, True):
                db = root / f"store{i}-{traces}.db"
                shutil.copyfile(template, db)
                set_traces(run_dir, traces)
                write_record(run_dir, read_run(run_dir, with_results=False).with_tracking(**vars(Tracking())))
                started = time.perf_counter()
                log_run_dir(run_dir, f"sqlite:///{db}", "bench")
                times[traces].append(time.perf_counter() - started)
                if traces:
                    assert read_run(run_dir, with_results=False).tracking.traces == N, "the traces were not logged"
    plain, traced = statistics.median(times[False]), statistics.median(times[True])
    return {"cases": N, "run_dir_mb": size / 1e6, "log_median_s": plain, "log_min_s": min(times[False]),
            "log_max_s": max(times[False]), "log_with_traces_median_s": traced,
            "traces_ms_per_case": (traced - plain) / N * 1000, "rounds": ROUNDS}


if __name__ == "__main__":
    json.dump(record("mlflow_logging", main()), sys.stdout, indent=2)
    print()
