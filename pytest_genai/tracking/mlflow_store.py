"""One MLflow run per session, logged from the local run folder in a bounded number of calls."""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pytest_genai.tracking.local import read_summary, write_summary

MAX_PARAM_CHARS = 6000  # MLflow truncates longer values silently; we cut them visibly


def _client(uri: str | None) -> Any:
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    with _quiet():
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=uri)


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own deprecation noise (sqlalchemy loader strategies) is not the user's to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def resolve_uri(uri: str | None, base_dir: Path) -> str | None:
    """A relative `sqlite:///file.db` is relative to `base_dir` (the config's folder), like every other path."""
    if uri and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        if rel and not rel.startswith(":memory:"):
            return f"sqlite:///{(base_dir / rel).resolve()}"
    return uri


@contextmanager
def _fail_fast() -> Iterator[None]:
    """For the start-of-session check only: an unreachable server answers in seconds, not minutes."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _active_parent(uri: str | None) -> Any:
    """MLflow's own pytest plugin (or the user) may have a run open in the same store: nest under it."""
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    if run is None or (uri is not None and uri != mlflow.get_tracking_uri()):
        return None
    return run


def log_run_dir(run_dir: Path, uri: str | None, experiment: str) -> str:
    """Create the run, log params/metrics/tags in batches and the folder as artifacts; return the run id."""
    with _quiet():
        return _log_run_dir(run_dir, uri, experiment)


def _log_run_dir(run_dir: Path, uri: str | None, experiment: str) -> str:
    from mlflow.entities import Metric, Param, RunTag

    summary = read_summary(run_dir)
    client = _client(uri)
    stale = summary.get("mlflow_incomplete_run_id")
    if stale:  # an earlier attempt created the run but did not finish logging: replace it
        try:
            client.delete_run(stale)
        except Exception:
            pass
    parent = _active_parent(uri)
    tags: dict[str, str] = dict(summary["tags"])
    if parent is not None:
        exp_id = parent.info.experiment_id
        tags["mlflow.parentRunId"] = parent.info.run_id
    else:
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    tags.setdefault("mlflow.source.name", "pytest-genai")
    tags["mlflow.source.type"] = "LOCAL"
    run = client.create_run(exp_id, tags={"mlflow.runName": run_dir.name}, run_name=run_dir.name)
    run_id = run.info.run_id
    summary["mlflow_incomplete_run_id"] = run_id
    write_summary(run_dir, summary)
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in summary["metrics"].items()
               if isinstance(v, (int, float)) and not math.isnan(float(v))]
    params = [Param(k, _param_value(v)) for k, v in summary["params"].items()]
    run_tags = [RunTag(k, str(v)) for k, v in tags.items()]
    try:
        client.log_batch(run_id, metrics=metrics, params=params, tags=run_tags)  # MLflow splits into request-size chunks
        client.log_artifacts(run_id, str(run_dir))
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    summary["mlflow_run_id"] = run_id
    summary["mlflow_experiment_id"] = exp_id
    summary.pop("mlflow_incomplete_run_id", None)
    write_summary(run_dir, summary)
    return run_id


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 14] + "...[truncated]"


def known_prompt_hash(uri: str | None, experiment: str, prompt_id: str, version: str) -> str | None:
    """The prompt hash logged for id@version in this experiment, if any run logged one."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None or uri.startswith("sqlite:///"):
        db = (uri or "sqlite:///mlflow.db")[len("sqlite:///"):]
        if not Path(db).is_file():
            return None  # no store yet: nothing logged, and no reason to create (and migrate) one now
    with _quiet(), _fail_fast():
        client = _client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        runs = client.search_runs(
        [exp.experiment_id],
            filter_string=f"tags.`prompt.id` = '{prompt_id}' and tags.`prompt.version` = '{version}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
    return runs[0].data.tags.get("prompt.hash") if runs else None
