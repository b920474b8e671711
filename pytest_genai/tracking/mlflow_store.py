"""One MLflow run per session, logged from the local run folder in a bounded number of calls. The run carries the
session's own start and end (the record's stamps), not the upload's. The run's description (the gate table in
markdown) is rendered by the caller's `describe`: tracking renders no report. MLflow is reached through
`mlflow_client`, the seam."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pytest_genai import names
from pytest_genai.run_folder import CONFIG_FILE
from pytest_genai.runlog import RunRecord, read_run, write_record
from pytest_genai.sanitize import URL_CREDENTIALS
from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking import mlflow_native as native
from pytest_genai.tracking.mlflow_client import bounded, in_experiment, quiet, use_tracking_uri
from pytest_genai.tracking.owner import owner_tags
from pytest_genai.tracking.views import store_config_views

MAX_PARAM_CHARS = 6000  # MLflow truncates longer values silently; we cut them visibly

Describe = Callable[[RunRecord], str]  # the run's description (markdown) from its record


def log_run_dir(run_dir: Path, uri: str | None, experiment: str, *, into_run_id: str | None = None,
                describe: Describe | None = None) -> str:
    """Create the run, log params/metrics/tags in batches and the folder as artifacts; return the run id.
    The run record in the folder is what is logged; its `tracking` part records where it went. A shard's record
    (execution.shard) is logged as a child of its group's parent run (found or created); `into_run_id` logs the
    record into that existing run instead of a new one (`pytest-genai merge` filling the parent). `describe`
    renders the run's description from the record (the caller's: tracking renders no report); None: none."""
    with quiet(), bounded(2, 15):
        return _log_run_dir(run_dir, uri, experiment, into_run_id, describe)


def _log_run_dir(run_dir: Path, uri: str | None, experiment: str, into_run_id: str | None = None,
                 describe: Describe | None = None) -> str:
    from mlflow.entities import Metric, Param, RunTag

    record = read_run(run_dir, with_results=True)
    store = mlflow_client.client(uri)
    started, ended = epoch_ms(record.started_at), epoch_ms(record.ended_at)  # the session's, not the upload's
    stale = record.tracking.incomplete_run_id
    if stale and stale != into_run_id:  # an earlier attempt created the run but did not finish logging: replace it
        try:
            if store.get_run(stale).info.status == "RUNNING":  # once deleted, MLflow keeps it RUNNING for good
                store.set_terminated(stale, status="KILLED")
            store.delete_run(stale)
        except Exception:
            pass
    tags: dict[str, str] = dict(record.tags)
    if into_run_id is not None:
        exp_id = str(store.get_run(into_run_id).info.experiment_id)
    elif record.execution.shard and record.execution.group:
        exp_id = experiment_id(store, experiment)
        tags["mlflow.parentRunId"] = group_parent(store, exp_id, record.execution.group, start_time=started)
    else:
        parent = mlflow_client.active_parent(uri)
        if parent is not None:
            exp_id = parent.info.experiment_id
            tags["mlflow.parentRunId"] = parent.info.run_id
        else:
            exp_id = experiment_id(store, experiment)
    tags.setdefault("mlflow.source.name", "pytest-genai")
    tags["mlflow.source.type"] = "LOCAL"
    if describe is not None:
        tags[names.TAG_RUN_NOTE] = describe(record)
    resolved = _resolved_config(run_dir)
    options = resolved.get("tracking") if isinstance(resolved.get("tracking"), dict) else {}
    owner = owner_tags()  # this process, until the run is terminated: a reader finding it RUNNING checks it lives
    if into_run_id is not None:
        run_id = into_run_id
        tags.update(owner)
    else:
        name = native.run_name(record)
        known = {k: tags[k] for k in (names.TAG_KIND, names.TAG_GROUP, names.TAG_SHARD, "mlflow.parentRunId")
                 if k in tags}
        run_id = store.create_run(exp_id, start_time=started, tags={"mlflow.runName": name, **owner, **known},
                                  run_name=name).info.run_id  # what it is, from its start: merge finds a cut one
    shown_uri = mlflow_client.public_uri(uri)
    write_record(run_dir, record.with_tracking(incomplete_run_id=run_id, uri=shown_uri, experiment=experiment))
    metrics = [Metric(k, float(v), ended, 0) for k, v in record.metrics.items()
               if isinstance(v, (int, float)) and not math.isnan(float(v))]
    params = [Param(k, _param_value(v)) for k, v in record.params.items()]
    run_tags = [RunTag(k, str(v)) for k, v in tags.items()]
    try:
        store.log_batch(run_id, metrics=metrics, params=params, tags=run_tags)  # MLflow splits into request-size chunks
        native_parts = _log_native(store, uri, run_id, exp_id, run_dir, record, options, resolved)
        store.log_artifacts(run_id, str(run_dir))
    except Exception:
        store.set_terminated(run_id, status="FAILED", end_time=ended)
        raise
    store.set_terminated(run_id, status="FINISHED", end_time=ended)
    write_record(run_dir, record.with_tracking(run_id=run_id, experiment_id=exp_id, incomplete_run_id=None,
                                               uri=shown_uri, experiment=experiment, error=None, **native_parts))
    return run_id


def _resolved_config(run_dir: Path) -> dict[str, Any]:
    """The run folder's copy of the resolved config: what to log besides the run (tracking.traces, views)."""
    import yaml

    try:
        data = yaml.safe_load((run_dir / CONFIG_FILE).read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _log_native(client: Any, uri: str | None, run_id: str, exp_id: str, run_dir: Path, record: Any,
                options: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """Dataset input, Prompt Registry link, case traces and the config's saved views on the experiment. What the
    store refuses is a warning on the record (and a tag), never a lost run: the params, metrics and artifacts are
    what gates and baselines read. Re-logging into the same run (merge again) finds its traces there: a warning."""
    from mlflow.entities import RunTag

    warnings: list[str] = []
    out: dict[str, Any] = {"traces": 0, "prompt_uri": None}

    def attempt(what: str, step: Any) -> Any:
        try:
            return step()
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            warnings.append(URL_CREDENTIALS.sub(r"\1***@", f"{what} not logged: {type(exc).__name__}: {first[:300]}"))
            return None

    attempt("dataset input", lambda: native.log_dataset(client, run_id, record))
    if resolved.get("views"):
        attempt("saved views", lambda: store_config_views(client, exp_id, resolved))
    # MLflow links a prompt to a run through the process-wide tracking store, and to the current experiment
    with use_tracking_uri(uri), in_experiment(exp_id):
        registered = attempt("prompt", lambda: native.register_prompt(client, run_id, run_dir, record, exp_id))
    if registered:
        out["prompt_uri"], why = registered
        if why:
            warnings.append(why)
    if options.get("traces", True) and record.results:
        started = float(epoch_ms(record.started_at))
        out["traces"] = attempt("traces", lambda: native.log_case_traces(uri, client, run_id, exp_id, record,
                                                                         started)) or 0
    tags = {names.TAG_TRACES: str(out["traces"])}
    if out["prompt_uri"]:
        tags[names.TAG_PROMPT_URI] = out["prompt_uri"]
    if warnings:
        tags[names.TAG_TRACKING_WARNINGS] = " | ".join(warnings)[:5000]
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    out["warnings"] = tuple(warnings)
    return out


def epoch_ms(stamp: str) -> int:
    """A record's `started_at`/`ended_at` (UTC, ISO 8601: to the millisecond, or to the second in records written
    before 0.4) in milliseconds since the epoch, as MLflow takes a run's start and end; now when the stamp cannot be
    read."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, TypeError, ValueError):
        return int(time.time() * 1000)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def group_runs(client: Any, exp_id: str, group: str, kind: str) -> list[Any]:
    """The live runs of a group of one kind (`eval`: parent candidates, `shard`: the shards), oldest first."""
    runs = client.search_runs([exp_id], filter_string=f"tags.`{names.TAG_GROUP}` = '{group}' and "
                                                      f"tags.`{names.TAG_KIND}` = '{kind}'", max_results=5000)
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def group_parent(client: Any, exp_id: str, group: str, *, start_time: int | None = None) -> str:
    """Find or create the parent run of a group, race-safely enough for a CI matrix starting together: look; if
    there is none, create one, look again and keep the oldest, deleting ours when it is not. Two shards can still
    both keep their own if their clocks disagree about who came first (start times are the clients'); `merge`
    settles that: it keeps the oldest candidate, moves every shard under it and deletes the empty others. A parent
    created here starts when the shard creating it started (`start_time`, ms; None: now)."""
    found = group_runs(client, exp_id, group, "eval")
    if found:
        return str(found[0].info.run_id)
    mine = client.create_run(exp_id, start_time=start_time, run_name=f"eval-{group}", tags={
        "mlflow.runName": f"eval-{group}", names.TAG_GROUP: group, names.TAG_KIND: "eval",
        names.TAG_STATUS: "pending", names.TAG_PARTIAL: "true",  # filled in by `pytest-genai merge`
        "mlflow.source.name": "pytest-genai", "mlflow.note.content":
            f"Sharded eval {group}: its shards are the child runs; `pytest-genai merge {group}` fills this run."})
    found = group_runs(client, exp_id, group, "eval") or [mine]
    keep = str(found[0].info.run_id)
    if keep != mine.info.run_id:
        try:
            supersede(client, mine.info.run_id, keep)
        except Exception:
            pass  # `merge` supersedes it
    return keep


def supersede(client: Any, run_id: str, kept: str) -> None:
    """An extra parent of a shard group (concurrent shards each created one) gives way to `kept`: tagged
    `genai.status` superseded and `genai.superseded_by`, terminated FINISHED (a deleted run can no longer be
    terminated: MLflow keeps it RUNNING for good), then deleted, so the MLflow UI lists one parent per group (its
    "deleted" filter still shows this one, and where it went)."""
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {
        names.TAG_STATUS: "superseded", names.TAG_SUPERSEDED_BY: kept,
        names.TAG_RUN_NOTE: f"Superseded by run {kept}, the parent of this shard group (two shards created one each "
                            "at the same moment); deleted by pytest-genai."}.items()])
    client.set_terminated(run_id, status="FINISHED")
    client.delete_run(run_id)


def experiment_id(client: Any, experiment: str) -> str:
    """Get or create; concurrent first sessions (a CI matrix) race to create it: the losers use the winner's."""
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(experiment))
    except Exception:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return str(exp.experiment_id)


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 14] + "...[truncated]"


def known_prompt_hashes(uri: str | None, experiment: str, prompt_id: str, version: str) -> set[str]:
    """Every prompt hash logged for id@version in this experiment (all runs, not only the latest)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None or uri.startswith("sqlite:///"):
        db = (uri or "sqlite:///mlflow.db")[len("sqlite:///"):]
        if not Path(db).is_file():
            return set()  # no store yet: nothing logged, and no reason to create (and migrate) one now
    with quiet(), bounded(0, 30):
        store = mlflow_client.client(uri)
        exp = store.get_experiment_by_name(experiment)
        if exp is None:
            return set()
        runs = store.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`prompt.id` = '{prompt_id}' and tags.`prompt.version` = '{version}'",
            max_results=5000,
        )
    return {h for h in (r.data.tags.get("prompt.hash") for r in runs) if h}
