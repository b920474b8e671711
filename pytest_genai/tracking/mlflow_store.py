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

from pytest_genai.runlog import read_run, write_record

MAX_PARAM_CHARS = 6000  # MLflow truncates longer values silently; we cut them visibly


def _client(uri: str | None) -> Any:
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # MLflow's telemetry thread unsets its session variable while request threads read os.environ: seen to fail
    # logging to a server offline; a test harness has no business phoning home anyway
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with _quiet():
        from mlflow.tracking import MlflowClient

        # the registry (models, prompts) is the same store: MLflow would otherwise take the process-wide URI
        return MlflowClient(tracking_uri=uri, registry_uri=uri) if uri else MlflowClient()


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own deprecation noise (sqlalchemy loader strategies) is not the user's to fix, nor are its INFO
    lines about migrating a new sqlite store, which land in the middle of pytest's progress line."""
    import logging

    migrations = logging.getLogger("mlflow.store.db.utils")
    level = migrations.level
    migrations.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        migrations.setLevel(level)


@contextmanager
def use_tracking_uri(uri: str | None) -> Iterator[None]:
    """MLflow's fluent APIs (log_model, traces) read a process-wide URI, and `mlflow.set_tracking_uri` also rewrites
    (or, given None, deletes) $MLFLOW_TRACKING_URI. Point them at `uri` for a block and put both back exactly, so a
    session inside another program (pytester, a notebook) leaves its tracking set-up as it found it."""
    if not uri:
        yield
        return
    import mlflow
    from mlflow.tracking._tracking_service import utils

    from pytest_genai.environ import overridden

    saved_global = utils._tracking_uri
    with overridden(keep=("MLFLOW_TRACKING_URI",)):
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            utils._tracking_uri = saved_global
            reset = getattr(utils, "reset", None)
            if callable(reset):
                reset()  # the tracer provider caches the URI it exports to


@contextmanager
def in_experiment(experiment_id: str) -> Iterator[None]:
    """MLflow files a LoggedModel and a registered prompt under the *current* experiment (not their run's): make
    that the eval run's for the call, so the model, the prompt, the traces and the run sit together in the UI; the
    caller's setting is put back."""
    from mlflow.tracking import fluent

    saved = fluent._active_experiment_id
    fluent._active_experiment_id = experiment_id
    try:
        yield
    finally:
        fluent._active_experiment_id = saved


def resolve_uri(uri: str | None, base_dir: Path) -> str | None:
    """A relative `sqlite:///file.db` is relative to `base_dir` (the config's folder), like every other path."""
    if uri and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        if rel and not rel.startswith(":memory:"):
            return f"sqlite:///{(base_dir / rel).resolve()}"
    return uri


def config_tracking_uri(config_path: Path) -> str | None:
    """tracking.uri of a genai.yaml, resolved as a session there would (read as plain YAML: no validation, and a
    `${ENV}` URI is left to the session); None when the file or the key is not there."""
    import yaml

    try:
        data = yaml.safe_load(config_path.read_text("utf-8")) if config_path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
    tracking = data.get("tracking") if isinstance(data, dict) else None
    uri = tracking.get("uri") if isinstance(tracking, dict) else None
    if isinstance(uri, str) and uri and "${" not in uri:
        return resolve_uri(uri, config_path.resolve().parent)
    return None


def command_tracking_uri(flag: str | None, config_path: Path = Path("genai.yaml")) -> str | None:
    """The store a command (`show`, `report`) reads an MLflow run id from, as a session would pick it: --tracking-uri,
    else tracking.uri of the genai.yaml in the current folder, else $MLFLOW_TRACKING_URI, else MLflow's default."""
    if flag:
        return resolve_uri(flag, Path.cwd())
    return config_tracking_uri(config_path) or os.environ.get("MLFLOW_TRACKING_URI") or None


@contextmanager
def _bounded(retries: int = 0, timeout: int = 10) -> Iterator[None]:
    """An unreachable server answers in seconds, not after MLflow's default ~4 minutes of retries."""
    from pytest_genai.environ import overridden

    with overridden({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}):
        yield


def check_store(uri: str | None) -> str | None:
    """At session start: None if the tracking store can be written, else why not. A sqlite file is checked
    without importing MLflow (its folder must be writable); a server is asked once, with no retries."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        folder = path.parent if str(path.parent) else Path(".")
        if path.exists() and not os.access(path, os.W_OK):
            return f"the sqlite store {path} is not writable"
        if not path.exists() and not (folder.is_dir() and os.access(folder, os.W_OK)):
            return f"the folder of the sqlite store {path} does not exist or is not writable"
        return None
    if uri.startswith(("http://", "https://")):
        try:
            # no retries: a refused connection answers at once; a live server on a loaded machine (basic auth
            # hashes each password) may take seconds to answer, which is not a reason to stop the run
            with _quiet(), _bounded(0, 30):
                _client(uri).search_experiments(max_results=1)
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def _active_parent(uri: str | None) -> Any:
    """MLflow's own pytest plugin (or the user) may have a run open in the same store: nest under it."""
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    if run is None or (uri is not None and uri != mlflow.get_tracking_uri()):
        return None
    return run


def log_run_dir(run_dir: Path, uri: str | None, experiment: str, *, into_run_id: str | None = None) -> str:
    """Create the run, log params/metrics/tags in batches and the folder as artifacts; return the run id.
    The run record in the folder is what is logged; its `tracking` part records where it went. A shard's record
    (execution.shard) is logged as a child of its group's parent run (found or created); `into_run_id` logs the
    record into that existing run instead of a new one (`pytest-genai merge` filling the parent)."""
    with _quiet(), _bounded(2, 15):
        return _log_run_dir(run_dir, uri, experiment, into_run_id)


def _log_run_dir(run_dir: Path, uri: str | None, experiment: str, into_run_id: str | None = None) -> str:
    from mlflow.entities import Metric, Param, RunTag

    from pytest_genai import names
    from pytest_genai.tracking import mlflow_native as native

    record = read_run(run_dir, with_results=True)
    client = _client(uri)
    stale = record.tracking.incomplete_run_id
    if stale and stale != into_run_id:  # an earlier attempt created the run but did not finish logging: replace it
        try:
            client.delete_run(stale)
        except Exception:
            pass
    tags: dict[str, str] = dict(record.tags)
    if into_run_id is not None:
        exp_id = str(client.get_run(into_run_id).info.experiment_id)
    elif record.execution.shard and record.execution.group:
        exp_id = _experiment_id(client, experiment)
        tags["mlflow.parentRunId"] = group_parent(client, exp_id, record.execution.group)
    else:
        parent = _active_parent(uri)
        if parent is not None:
            exp_id = parent.info.experiment_id
            tags["mlflow.parentRunId"] = parent.info.run_id
        else:
            exp_id = _experiment_id(client, experiment)
    tags.setdefault("mlflow.source.name", "pytest-genai")
    tags["mlflow.source.type"] = "LOCAL"
    tags[names.TAG_RUN_NOTE] = native.run_description(record)
    resolved = _resolved_config(run_dir)
    options = resolved.get("tracking") if isinstance(resolved.get("tracking"), dict) else {}
    if into_run_id is not None:
        run_id = into_run_id
    else:
        name = native.run_name(record)
        run_id = client.create_run(exp_id, tags={"mlflow.runName": name}, run_name=name).info.run_id
    write_record(run_dir, record.with_tracking(incomplete_run_id=run_id, uri=_public_uri(uri), experiment=experiment))
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in record.metrics.items()
               if isinstance(v, (int, float)) and not math.isnan(float(v))]
    params = [Param(k, _param_value(v)) for k, v in record.params.items()]
    run_tags = [RunTag(k, str(v)) for k, v in tags.items()]
    try:
        client.log_batch(run_id, metrics=metrics, params=params, tags=run_tags)  # MLflow splits into request-size chunks
        native_parts = _log_native(client, uri, run_id, exp_id, run_dir, record, options, resolved)
        client.log_artifacts(run_id, str(run_dir))
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    write_record(run_dir, record.with_tracking(run_id=run_id, experiment_id=exp_id, incomplete_run_id=None,
                                               uri=_public_uri(uri), experiment=experiment, error=None, **native_parts))
    return run_id


def _resolved_config(run_dir: Path) -> dict[str, Any]:
    """The run folder's copy of the resolved config: what to log besides the run (tracking.traces, views)."""
    import yaml

    try:
        data = yaml.safe_load((run_dir / "config.resolved.yaml").read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _log_native(client: Any, uri: str | None, run_id: str, exp_id: str, run_dir: Path, record: Any,
                options: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """Dataset input, Prompt Registry link, case traces and the config's saved views on the experiment. What the
    store refuses is a warning on the record (and a tag), never a lost run: the params, metrics and artifacts are
    what gates and baselines read. Re-logging into the same run (merge again) finds its traces there: a warning."""
    from mlflow.entities import RunTag

    from pytest_genai import names
    from pytest_genai.sanitize import URL_CREDENTIALS
    from pytest_genai.tracking import mlflow_native as native

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
        from pytest_genai.views import store_config_views

        attempt("saved views", lambda: store_config_views(client, exp_id, resolved))
    # MLflow links a prompt to a run through the process-wide tracking store, and to the current experiment
    with use_tracking_uri(uri), in_experiment(exp_id):
        registered = attempt("prompt", lambda: native.register_prompt(client, run_id, run_dir, record, exp_id))
    if registered:
        out["prompt_uri"], why = registered
        if why:
            warnings.append(why)
    if options.get("traces", True) and record.results:
        started = _epoch_ms(record.started_at)
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


def _epoch_ms(stamp: str) -> float:
    import calendar

    try:
        return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) * 1000.0
    except (TypeError, ValueError):
        return time.time() * 1000.0


def group_runs(client: Any, exp_id: str, group: str, kind: str) -> list[Any]:
    """The live runs of a group of one kind (`eval`: parent candidates, `shard`: the shards), oldest first."""
    from pytest_genai import names

    runs = client.search_runs([exp_id], filter_string=f"tags.`{names.TAG_GROUP}` = '{group}' and "
                                                      f"tags.`{names.TAG_KIND}` = '{kind}'", max_results=5000)
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def group_parent(client: Any, exp_id: str, group: str) -> str:
    """Find or create the parent run of a group, race-safely enough for a CI matrix starting together: look; if
    there is none, create one, look again and keep the oldest, deleting ours when it is not. Two shards can still
    both keep their own if their clocks disagree about who came first (start times are the clients'); `merge`
    settles that: it keeps the oldest candidate, moves every shard under it and deletes the empty others."""
    from pytest_genai import names

    found = group_runs(client, exp_id, group, "eval")
    if found:
        return str(found[0].info.run_id)
    mine = client.create_run(exp_id, run_name=f"eval-{group}", tags={
        "mlflow.runName": f"eval-{group}", names.TAG_GROUP: group, names.TAG_KIND: "eval",
        names.TAG_STATUS: "pending", names.TAG_PARTIAL: "true",  # filled in by `pytest-genai merge`
        "mlflow.source.name": "pytest-genai", "mlflow.note.content":
            f"Sharded eval {group}: its shards are the child runs; `pytest-genai merge {group}` fills this run."})
    found = group_runs(client, exp_id, group, "eval") or [mine]
    keep = str(found[0].info.run_id)
    if keep != mine.info.run_id:
        try:
            client.delete_run(mine.info.run_id)
        except Exception:
            pass
    return keep


def _experiment_id(client: Any, experiment: str) -> str:
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


def _public_uri(uri: str | None) -> str | None:
    from pytest_genai.sanitize import URL_CREDENTIALS

    return URL_CREDENTIALS.sub(r"\1***@", uri) if uri else uri


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
    with _quiet(), _bounded(0, 30):
        client = _client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return set()
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`prompt.id` = '{prompt_id}' and tags.`prompt.version` = '{version}'",
            max_results=5000,
        )
    return {h for h in (r.data.tags.get("prompt.hash") for r in runs) if h}
