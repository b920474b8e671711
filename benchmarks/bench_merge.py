"""Target: merging 4 shards of 2,500 cases (`pytest-genai merge`) under 5 s.

Builds a 10,000-case eval, splits it with `--genai-shard`'s hash into 4 shards, finishes each shard as a session
does (`EvalSession.finish(shard=..., group=...)`: its record, CIs and run folder) and logs them as child runs to a
migrated sqlite store (not timed). Then, on a fresh copy of that store each round, times `merge()`: finding the 4
shard runs, downloading their run.json + results.jsonl, the checks, the merged record over 10,000 results (registry
metrics, 2,000-resample bootstrap CIs, gates), the local run folder and logging it into the parent run. The merged
metrics are checked against those of the same 10,000 results finished unsharded. Last, the same merge in a fresh
interpreter (imports included), as `pytest-genai merge` runs in CI."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import REPO, record

N = 10_000
SHARDS = 4
ROUNDS = 3
GROUP = "bench-merge"


def build(root: Path) -> tuple[Path, dict[str, float]]:
    """The config and eval set; 4 logged shard runs in root/shards.db; the unsharded run's metrics."""
    sys.path.insert(0, str(REPO))
    from mlflow.tracking import MlflowClient

    from pytest_genai.config import load_config
    from pytest_genai.record import capture_env
    from pytest_genai.session import EvalSession
    from pytest_genai.shard.select import shard_of
    from pytest_genai.publish import html_report
    from pytest_genai.tracking.local import new_run_dir, write_run_dir
    from pytest_genai.tracking.mlflow_store import log_run_dir
    from pytest_genai.types import CaseResult

    cases = [{"id": f"c{i}", "question": f"What is item {i}?", "answers": [f"answer {i}"],
              "context": f"Item {i} is answer {i}."} for i in range(N)]
    (root / "evals.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    db = root / "shards.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # migrations
    config = root / "genai.yaml"
    config.write_text("version: 1\npipeline: x:y\neval:\n  set: evals.jsonl\ngates:\n  f1: '>= 0.5'\n  em: 'ci_low >= 0.5'\n"
                      f"tracking:\n  uri: sqlite:///{db}\n  experiment: bench\n  results_dir: runs\n"
                      f"env:\n  lock_file: {REPO / 'requirements.lock'}\n")

    def result(i: int, c: object) -> CaseResult:
        right = i % 7 != 0
        return CaseResult(c.id, c.question, f"answer {i}" if right else "no", c.answers, float(right),  # type: ignore[attr-defined]
                          1.0 if right else 0.0, 10.0 + i % 97, 40 + i % 5, 3, 0.0001, i,
                          prompt=f"Context: {c.context}\nQ: {c.question}")  # type: ignore[attr-defined]

    cfg = load_config(config)
    env, git = capture_env(cfg)
    full = EvalSession.from_config(cfg)
    for i, c in enumerate(full.eval_set.cases):
        full.add_result(result(i, c))
    unsharded = dict(full.finish(env, git, enforce=True).metrics)
    for k in range(1, SHARDS + 1):
        s = EvalSession.from_config(cfg)
        for i, c in enumerate(s.eval_set.cases):
            if shard_of(c.id, SHARDS) == k:
                s.add_result(result(i, c))
        rec = s.finish(env, git, enforce=False, selected=set(s.results), shard=f"{k}/{SHARDS}", group=GROUP)
        run_dir = new_run_dir(root / "runs", cfg.hash)
        write_run_dir(run_dir, s, rec, env, render_report=html_report)
        log_run_dir(run_dir, f"sqlite:///{db}", "bench")
    return config, unsharded


def main() -> dict[str, float]:
    from pytest_genai.runlog import read_results
    from pytest_genai.shard.merge import merge

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config, unsharded = build(root)
        times, cases = [], 0
        for r in range(ROUNDS):
            db = root / f"round{r}.db"
            shutil.copyfile(root / "shards.db", db)
            started = time.perf_counter()
            merged, run_dir = merge(GROUP, config, f"sqlite:///{db}", SHARDS)
            times.append(time.perf_counter() - started)
            if dict(merged.metrics) != unsharded or merged.status != "complete" or not merged.gates_enforced:
                raise RuntimeError(f"the merged run differs from the unsharded one: {dict(merged.metrics)} vs {unsharded}")
            cases = len(read_results(run_dir))
        # the command as CI runs it: a fresh interpreter (imports of mlflow, numpy, scipy included)
        db = root / "cold.db"
        shutil.copyfile(root / "shards.db", db)
        code = ("import sys; from pathlib import Path; from pytest_genai.shard.merge import merge; "
                f"merge({GROUP!r}, Path({str(config)!r}), {f'sqlite:///{db}'!r}, {SHARDS})")
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
        cold = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        # what of that is MLflow's own start-up: a fresh interpreter importing it and opening the same store
        code = (f"from mlflow.tracking import MlflowClient; import mlflow.artifacts; "
                f"MlflowClient({f'sqlite:///{db}'!r}).search_experiments()")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        mlflow_start = time.perf_counter() - started
    return {"cases": cases, "shards": SHARDS, "merge_median_s": statistics.median(times), "merge_first_s": times[0],
            "merge_min_s": min(times), "merge_max_s": max(times), "rounds": ROUNDS, "merge_fresh_process_s": cold,
            "mlflow_import_and_store_open_s": mlflow_start,
            "metrics_identical_to_unsharded": True}


if __name__ == "__main__":
    json.dump(record("merge", main()), sys.stdout, indent=2)
    print()
