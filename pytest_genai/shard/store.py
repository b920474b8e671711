"""The tracking-store side of a sharded eval: the shard runs of a group read back (each shard's record and
per-case results), whether the group is ready to merge, and its parent settled so that after a merge no run of the
group is left RUNNING: the parent merge fills is terminated by that logging (FINISHED), every extra parent that
concurrent shards created is superseded (tagged, terminated, deleted: `mlflow_store.supersede`), and a shard run
whose logging process died is marked interrupted (`tracking.owner`), then left out of the merge."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from pytest_genai import names
from pytest_genai.run_folder import EVAL_SET_DIR, RESULTS_FILE, RUN_FILE
from pytest_genai.runlog import INTERRUPTED, RunLogError, RunRecord, read_results, read_run
from pytest_genai.shard.select import parse_shard
from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking.mlflow_client import use_tracking_uri
from pytest_genai.tracking.mlflow_store import group_parent, group_runs, supersede
from pytest_genai.tracking.owner import ALIVE, GONE, settle


class MergeError(Exception):
    """The shards cannot be merged (exit 2); the message names the shard and why."""


@dataclass(frozen=True)
class Shard:
    index: int  # I of I/N
    count: int  # N
    run_id: str
    record: RunRecord
    lines: Mapping[str, str] = field(default_factory=dict)  # case id -> its results.jsonl line, as the shard wrote it
    parent_run_id: str | None = None  # the parent it was logged under (mlflow.parentRunId)

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Fetched:
    shards: list[Shard]
    left_out: tuple[str, ...] = ()  # shard runs not merged, and why (their logging process died)


def fetch_shards(client: Any, uri: str | None, exp_id: str, group: str) -> Fetched:
    """Every live shard run of the group, with its record (run.json) and results (results.jsonl, kept line by line
    too: the merged results.jsonl is those lines, not 10,000 results serialised again). Read as
    `tracking.runref.resolve` reads an MLflow run, but from the run's artifact store directly: the `runs:/`
    resolution looks up logged models on every download (~80 ms each on sqlite). A shard run left RUNNING by a
    process that is gone is marked interrupted and left out (`left_out` says so); one still being logged on this
    host is a MergeError."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    out, left_out = [], []
    with use_tracking_uri(uri):  # an mlflow-artifacts:/ store (a server's proxied artifacts) is found through it
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        runs = group_runs(client, exp_id, group, "shard")
        unfinished = settle(client, runs)
        for run in runs:
            rid, label = str(run.info.run_id), run.data.tags.get(names.TAG_SHARD, "?")
            left = unfinished.get(rid)
            if left is not None and left.state == ALIVE:
                raise MergeError(f"shard {label}: {left.line()}: merge once it has ended")
            if (left is not None and left.state == GONE) or run.info.status == "KILLED":
                left_out.append(f"shard {label} run {rid} is {INTERRUPTED}, its logging cut short (left out: "
                                f"re-run the shard, or `pytest-genai upload` its run folder)")
                continue
            repo = get_artifact_repository(run.info.artifact_uri)
            with tempfile.TemporaryDirectory(prefix="genai-shard-") as tmp:
                for name in (RUN_FILE, RESULTS_FILE):
                    try:
                        repo.download_artifacts(name, tmp)
                    except Exception as exc:
                        still = f" ({left.line()})" if left is not None else ""
                        raise RunLogError(f"shard {label} (run {rid}) has no {name} artifact{still}: "
                                          f"{type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
                record = read_run(Path(tmp), with_results=False)
                results = read_results(Path(tmp))
                lines = [ln for ln in (Path(tmp) / RESULTS_FILE).read_text("utf-8").splitlines() if ln.strip()]
            if record.tracking.run_id is None:
                record = record.with_tracking(run_id=rid)
            i, n = parse_shard(record.execution.shard or label)
            out.append(Shard(i, n, rid, replace(record, results=tuple(results)),
                             {r.id: ln for r, ln in zip(results, lines)}, run.data.tags.get("mlflow.parentRunId")))
    return Fetched(sorted(out, key=lambda s: (s.index, s.run_id)), tuple(left_out))


def settle_parent(client: Any, exp_id: str, group: str, shards: Sequence[Shard]) -> str:
    """The group's parent (the oldest candidate; created if none): every shard is moved under it, and every other
    parent still waiting (`pending`: one that concurrent shards created) is superseded by it, as is one an earlier
    version deleted without terminating (MLflow keeps a deleted run RUNNING: it is restored to be terminated).
    The parent itself is terminated by the merged run's logging."""
    from mlflow.entities import ViewType

    parent = group_parent(client, exp_id, group)
    for s in shards:
        if s.parent_run_id != parent:
            client.set_tag(s.run_id, "mlflow.parentRunId", parent)
    for other in group_runs(client, exp_id, group, "eval"):
        if other.info.run_id != parent and other.data.tags.get(names.TAG_STATUS) in (None, "pending"):
            supersede(client, str(other.info.run_id), parent)
    deleted = client.search_runs([exp_id], filter_string=f"tags.`{names.TAG_GROUP}` = '{group}' and "
                                                         f"tags.`{names.TAG_KIND}` = 'eval' and "
                                                         "attributes.status = 'RUNNING'",
                                 run_view_type=ViewType.DELETED_ONLY, max_results=1000)
    for other in deleted:
        client.restore_run(other.info.run_id)
        supersede(client, str(other.info.run_id), parent)
    return parent


def shard_snapshot(client: Any, run_id: str, run_dir: Path) -> bool:
    """Shard 1's eval_set/ snapshot into the merged folder (sanitizing 10,000 lines again costs seconds)."""
    if client is None:
        return False
    with tempfile.TemporaryDirectory(prefix="genai-snapshot-") as tmp:
        try:
            client.download_artifacts(run_id, EVAL_SET_DIR, tmp)
        except Exception:
            return False
        files = [f for f in (Path(tmp) / EVAL_SET_DIR).glob("*") if f.is_file()]
        for f in files:
            (run_dir / EVAL_SET_DIR / f.name).write_bytes(f.read_bytes())
        return bool(files)


def ready_to_merge(group: str, total: int, tracking_uri: str | None, experiment: str) -> bool:
    """All N shard runs of the group are logged (FINISHED, one of each I/N) and its parent run is still
    pending: what the last shard to finish sees, and only it (through the shared store)."""
    with mlflow_client.quiet(), mlflow_client.bounded(0, 30):
        client = mlflow_client.client(tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return False
        exp_id = str(exp.experiment_id)
        shards = [r for r in group_runs(client, exp_id, group, "shard") if r.info.status == "FINISHED"]
        labels = {r.data.tags.get(names.TAG_SHARD) for r in shards}
        if not {f"{i}/{total}" for i in range(1, total + 1)} <= labels:
            return False
        parents = group_runs(client, exp_id, group, "eval")
        return not any(p.data.tags.get(names.TAG_STATUS) not in (None, "pending") for p in parents)
