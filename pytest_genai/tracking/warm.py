"""A second process that imports MLflow and opens the tracking store while the cases run, then logs the finished
run folder. MLflow's import and store set-up are most of the fixed seconds a tracked session pays
(`benchmarks/bench_case_overhead.py`, `tracked_fixed_s`); here they run on another core, beside the cases. The worker runs the same `log_run_dir` the session would
(everything it does goes through the run folder: `run.json` records where the run went), so the results on disk
and in the store are the same either way. Plain JSON lines over its stdin/stdout, nothing else shared: the
caller's `describe` (the run's description) travels as its `module:name`, imported by the worker.

Used only when it saves something: MLflow not yet imported in this process (a session inside a program that has
it loaded, pytester or a notebook, logs in-process), and no MLflow run open here to nest under. A worker that
died, or never started, means logging in-process, as before."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any, Callable

from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking.mlflow_store import log_run_dir

ENV_OFF = "PYTEST_GENAI_TRACKING_WORKER"  # "0": always log in-process (a one-core machine gains nothing)


class WorkerGone(RuntimeError):
    """The worker is not there to answer: the caller logs in-process instead."""


class WorkerError(Exception):
    """Logging failed in the worker; its class name is the original exception's (the session's message is the
    same as when it logs in-process)."""


class WarmTracker:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._asked = False  # a log request was sent (its reply read): the worker is idle, let it exit cleanly

    @classmethod
    def start(cls, uri: str | None) -> "WarmTracker | None":
        """A worker when one saves time here, else None (log in-process)."""
        if os.environ.get(ENV_OFF, "1") == "0" or "mlflow" in sys.modules or (os.cpu_count() or 1) < 2:
            return None
        return cls.spawn(uri)

    @classmethod
    def spawn(cls, uri: str | None) -> "WarmTracker | None":
        try:
            proc = subprocess.Popen([sys.executable, "-m", "pytest_genai.tracking.warm"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8")
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"uri": uri}) + "\n")
            proc.stdin.flush()
        except (OSError, ValueError):
            return None
        return cls(proc)

    def log_run_dir(self, run_dir: Path, uri: str | None, experiment: str, *,
                    describe: Callable[[Any], str] | None = None) -> str:
        """`mlflow_store.log_run_dir` in the worker; WorkerGone when it cannot answer (nothing was logged by it)."""
        if mlflow_client.active_parent(uri) is not None:
            raise WorkerGone("an MLflow run is open in this process: nest under it here")
        ask = {"run_dir": str(run_dir), "uri": uri, "experiment": experiment, "describe": by_name(describe)}
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        self._asked = True
        try:
            proc.stdin.write(json.dumps(ask) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (OSError, ValueError) as exc:
            raise WorkerGone(str(exc)) from None
        if not line:
            raise WorkerGone(f"the tracking worker exited ({proc.poll()})")
        reply = json.loads(line)
        if "run_id" in reply:
            return str(reply["run_id"])
        raise type(str(reply.get("error") or "Exception"), (WorkerError,), {})(reply.get("message", ""))

    def close(self) -> None:
        """A worker never asked to log holds nothing (a session that stopped before logging): it is killed at
        once rather than waited for while it finishes importing MLflow. One that answered exits on end of input."""
        proc = self._proc
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            if not self._asked:
                proc.kill()
            proc.wait(timeout=10)
        except Exception:
            proc.kill()


def by_name(fn: Callable[..., Any] | None) -> str | None:
    """A module-level function as `module:qualname`, which the worker imports; WorkerGone for one that cannot be
    named so (a lambda, a closure): the caller logs in-process."""
    if fn is None:
        return None
    name = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}"
    try:
        same = from_name(name) is fn
    except (ImportError, AttributeError, ValueError):
        same = False
    if not same:
        raise WorkerGone(f"{fn!r} cannot be named to the tracking worker")
    return name


def from_name(name: str) -> Any:
    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def warm_up(uri: str | None) -> None:
    """Everything `log_run_dir` imports and opens, paid now: MLflow, the store (engine, schema check), the trace
    writer's table models, the dataset and prompt APIs, the tracer provider's processors (`mlflow.set_tracking_uri`
    imports them) and the request headers (the first HTTP request does)."""
    with mlflow_client.quiet():
        import mlflow.data  # noqa: F401
        import mlflow.genai  # noqa: F401
        import mlflow.tracing.processor.base_mlflow  # noqa: F401
        import mlflow.tracing.processor.otel  # noqa: F401
        import mlflow.tracking.request_header.registry  # noqa: F401
        from mlflow.tracing.client import TracingClient

        client = mlflow_client.client(uri)
        if not uri or (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file()):
            return  # a store that is not there yet (or MLflow's default) is made by the logging, not by warming up
        store = client._tracking_client.store
        TracingClient(uri).store  # noqa: B018
        if type(store).__name__ == "SqlAlchemyStore":
            import mlflow.store.tracking.dbmodels.models  # noqa: F401


def main(stdin: IO[str] = sys.stdin) -> None:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever MLflow prints goes where stderr goes, never into the replies
    first = stdin.readline()
    if not first:
        return
    uri = json.loads(first).get("uri")
    try:
        warm_up(uri)
    except Exception:
        pass  # the log request will meet the same problem and report it

    for line in stdin:
        ask: dict[str, Any] = json.loads(line)
        try:
            describe = from_name(ask["describe"]) if ask.get("describe") else None
            reply: dict[str, Any] = {"run_id": log_run_dir(Path(ask["run_dir"]), ask["uri"], ask["experiment"],
                                                           describe=describe)}
        except Exception as exc:
            reply = {"error": type(exc).__name__, "message": str(exc)}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
