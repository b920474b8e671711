"""The one seam to MLflow: every module that talks to a tracking store (runs, artifacts, the model registry,
prompts, traces) opens its client here, with MLflow's noise kept down and its network calls bounded, and names
the store it talks to here (which URI a command or a config means, the URI without credentials).

MLflow itself is imported inside the functions: importing this module costs nothing, so `pytest_genai.plugin`
stays light at pytest start-up and a session without --genai-config never imports MLflow."""

from __future__ import annotations

import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent first use of a sqlite store is not serialized there
    fcntl = None  # type: ignore[assignment]

from pytest_genai.environ import overridden
from pytest_genai.sanitize import URL_CREDENTIALS

DEFAULT_STORE = "sqlite:///mlflow.db"  # MLflow's default tracking store (a file in the current folder)


def client(uri: str | None = None, *, own_process: bool = True) -> Any:
    """An MlflowClient of `uri` (tracking and registry: the same store), or of MLflow's current URI when None.
    `own_process` False: inside another program's process (a served model's monitor): its MLflow settings (URL
    printing, telemetry) and log levels are left as that program has them."""
    if not own_process:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=uri, registry_uri=uri) if uri else MlflowClient()
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # MLflow's telemetry thread unsets its session variable while request threads read os.environ: seen to fail
    # logging to a server offline; a test harness has no business phoning home anyway
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with quiet():
        from mlflow.tracking import MlflowClient

        # the registry (models, prompts) is the same store: MLflow would otherwise take the process-wide URI
        with _first_sqlite_use(uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE) as first:
            made = MlflowClient(tracking_uri=uri, registry_uri=uri) if uri else MlflowClient()
            if first:
                made.search_experiments(max_results=1)  # creates and migrates the store, under the lock
        return made


_READY: set[str] = set()  # sqlite stores this process has opened (created and migrated under the lock)
SQLITE_LOCK_WAIT_S = 120.0


@contextmanager
def _first_sqlite_use(uri: str) -> Iterator[bool]:
    """The first use of a sqlite store creates and migrates it; sessions starting together on a new store did that
    at once and corrupted it (a half-migrated schema). The first use in each process (True in the block) happens
    under an exclusive lock on the store's folder (flock: released however the process ends), so the others wait,
    then find it migrated. Bounded: after SQLITE_LOCK_WAIT_S it goes on without the lock."""
    if not uri.startswith("sqlite:///") or uri in _READY or fcntl is None:
        yield False
        return
    folder = Path(uri[len("sqlite:///"):]).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield False  # MLflow reports the store's own problem
        return
    try:
        deadline = time.monotonic() + SQLITE_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        yield True
        _READY.add(uri)
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def quiet() -> Iterator[None]:
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
def bounded(retries: int = 0, timeout: int = 10) -> Iterator[None]:
    """An unreachable server answers in seconds, not after MLflow's default ~4 minutes of retries."""
    with overridden({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}):
        yield


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


def active_parent(uri: str | None) -> Any:
    """MLflow's own pytest plugin (or the user) may have a run open in the same store: nest under it. None when
    MLflow is not imported (nothing can be open) or the open run is in another store."""
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    if run is None or (uri is not None and uri != mlflow.get_tracking_uri()):
        return None
    return run


# --------------------------------------------------------------------------- which store

def public_uri(uri: str | None) -> str | None:
    """The URI as it may be shown and recorded: credentials masked."""
    return URL_CREDENTIALS.sub(r"\1***@", uri) if uri else uri


def store_name(uri: str | None) -> str:
    """The store a read goes to, for a message: the URI, $MLFLOW_TRACKING_URI, or MLflow's default."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"{DEFAULT_STORE} (MLflow's default)"


def missing_sqlite(uri: str | None) -> Path | None:
    """The file of a sqlite store that does not exist: asking MLflow would create and migrate an empty one."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///"):])
    return None if path.exists() else path.resolve()


def error_line(exc: BaseException) -> str:
    """`Class: first line` of what a store answered (its tracebacks and HTML pages are not a message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


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


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database file


def is_sqlite_file(path: Path) -> bool:
    """An SQLite database by its header, or an empty file (which SQLite makes a new database); unreadable: False."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError:
        return False
    return head in (b"", SQLITE_HEADER)


def check_store(uri: str | None) -> str | None:
    """At session start: None if the tracking store can be written, else why not. A sqlite file is checked
    without importing MLflow (its folder must be writable); a server is asked once, with no retries."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        folder = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            return f"the sqlite store {path} is a folder, not a database file"
        if path.exists() and not os.access(path, os.W_OK | os.R_OK):
            return f"the sqlite store {path} is not readable and writable"
        if path.exists() and not is_sqlite_file(path):
            return (f"the sqlite store {path} is not an SQLite database (it does not start with 'SQLite format 3': "
                    "another kind of file, or a damaged one)")
        if not path.exists() and not (folder.is_dir() and os.access(folder, os.W_OK)):
            return f"the folder of the sqlite store {path} does not exist or is not writable"
        return None
    if uri.startswith(("http://", "https://")):
        try:
            # no retries: a refused connection answers at once; a live server on a loaded machine (basic auth
            # hashes each password) may take seconds to answer, which is not a reason to stop the run
            with quiet(), bounded(0, 30):
                client(uri).search_experiments(max_results=1)
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None
