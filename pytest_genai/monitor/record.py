"""Request records: what the served model writes for every row it answers, and the sinks that keep them.

A record is plain JSON, sanitized by the bundle config's Sanitizer before it leaves the process (ids and times
excepted: they join feedback and select windows). Writing never raises into `predict`: a failing sink is
counted and logged once. Sinks:

* `local`   one JSON line per record appended (O_APPEND, one write per request) to `monitor.path`
            (default `.pytest-genai/requests.jsonl` under the serving process's cwd; env GENAI_MONITOR_PATH wins);
* `mlflow`  one MLflow 3 trace per record, tagged with the LoggedModel id, written off the request path in
            batches (a bounded queue to one daemon thread, the eval's batched trace writer behind it), so a
            tracking outage neither fails nor slows a request (a full queue drops records, counted);
* `off`     nothing recorded.
The env GENAI_MONITOR_SINK overrides `monitor.sink`."""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking.mlflow_traces import log_traces, request_trace

SCHEMA = 1
DEFAULT_SINK = "mlflow"
SINKS = ("local", "mlflow", "off")
DEFAULT_PATH = ".pytest-genai/requests.jsonl"
ENV_PATH = "GENAI_MONITOR_PATH"
ENV_SINK = "GENAI_MONITOR_SINK"
TRACE_NAME = "genai.request"
TAG_MODEL_ID = "genai.model_id"
TAG_REQUEST_ID = "genai.request_id"
ATTR_RECORD = "genai.record"
# Fields that are identifiers or numbers the sanitizer must not touch (a hex id could look like a phone number).
_RAW_FIELDS = ("schema", "request_id", "ts", "time", "model_id", "model_run_id", "model_name", "model_version")

# A stopped server writes what it gathered for at most EXIT_FLUSH_S (under `docker stop`'s 10 s before SIGKILL).
EXIT_FLUSH_S = 8.0
RETRY_PAUSES_S = (0.2, 1.0)

log = logging.getLogger("pytest_genai.monitor")


class SinkError(Exception):
    """A sink that cannot be read or configured; the message says which and why."""


@dataclass(frozen=True)
class ModelIdentity:
    """Who answered: the LoggedModel id is authoritative (read from the model's MLmodel); the registered name and
    version are what MLflow wrote next to a model downloaded as models:/NAME/... (registered_model_meta)."""

    model_id: str | None = None
    run_id: str | None = None
    name: str | None = None
    version: str | None = None


def identity_of(model_dir: Path) -> ModelIdentity:
    """Best effort: a model folder without MLmodel (a bare bundle in a test) has no identity, and still serves."""
    import yaml

    try:
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ModelIdentity()
    name = version = None
    try:
        meta = yaml.safe_load((model_dir / "registered_model_meta").read_text("utf-8")) or {}
        name, version = meta.get("model_name"), meta.get("model_version")
    except (OSError, yaml.YAMLError):
        pass
    return ModelIdentity(mlmodel.get("model_id") or None, mlmodel.get("run_id") or None,
                         str(name) if name else None, str(version) if version is not None else None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_record(*, request_id: str, ts: float, identity: ModelIdentity, question: str | None, answer: str | None,
                   latency_ms: float, input_tokens: int, output_tokens: int, pricing: tuple[float, float],
                   verdict: Any, retrieved: Sequence[Mapping[str, Any]] = (), error: str | None = None,
                   batched: bool = False) -> dict[str, Any]:
    """One row's record, raw (the Recorder sanitizes it). `verdict`: the guard's Verdict, or None (no safety checks)."""
    scores = [float(r["score"]) for r in retrieved if isinstance(r, Mapping) and isinstance(r.get("score"), (int, float))]
    return {
        "schema": SCHEMA, "request_id": request_id, "ts": ts,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z",
        "model_name": identity.name, "model_version": identity.version, "model_id": identity.model_id,
        "model_run_id": identity.run_id, "question": question, "answer": answer, "latency_ms": latency_ms,
        "input_tokens": input_tokens, "output_tokens": output_tokens,
        "cost_usd": input_tokens / 1000 * pricing[0] + output_tokens / 1000 * pricing[1],
        "safety_flags": list(verdict.flags) if verdict is not None else None,
        "toxicity": verdict.toxicity if verdict is not None else None,
        "blocked": bool(verdict is not None and verdict.blocked),
        "critical": bool(verdict is not None and verdict.critical),
        "retrieval_top_score": max(scores) if scores else None,
        "retrieved_doc_ids": [str(r.get("doc_id")) for r in retrieved if isinstance(r, Mapping)],
        "error": error, "batched": batched,
    }


class Recorder:
    """Sanitizes records and hands them to the sink; never raises. `failures` counts what was lost."""

    def __init__(self, sink: Any, sanitizer: Any) -> None:
        self.sink = sink
        self.sanitizer = sanitizer
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.sink is not None

    def emit(self, records: Sequence[dict[str, Any]]) -> None:
        if self.sink is None or not records:
            return
        try:
            self.sink.write([sanitize_record(r, self.sanitizer) for r in records])
        except Exception as exc:  # noqa: BLE001 - a broken sink must never fail the request
            self.failures += len(records)
            if self.failures == len(records):  # the first loss: once, not per request
                log.warning("pytest-genai monitor: the %s sink failed, request records are being dropped: %s",
                            getattr(self.sink, "name", "?"), self.sanitizer.secrets_only().text(str(exc)))


def sanitize_record(record: Mapping[str, Any], sanitizer: Any) -> dict[str, Any]:
    raw = {k: record[k] for k in _RAW_FIELDS if k in record}
    out = sanitizer.obj({k: v for k, v in record.items() if k not in raw})
    out.update(raw)
    return out


# --------------------------------------------------------------------------- sinks

class LocalSink:
    """Append-only JSONL; one os.write per request with O_APPEND, so several server workers can share a file."""

    name = "local"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        data = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False, default=str) + "\n" for r in records)
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._fd, data.encode("utf-8"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class MlflowTraceSink:
    """One trace per record, written in batches by a daemon thread (the batched trace writer of the eval's case
    traces: one transaction per batch on a SQL store), so the request only pays a `queue.put_nowait` and a tracking
    outage never fails or slows it: a failed batch is counted and logged once, a full queue drops records."""

    name = "mlflow"

    def __init__(self, identity: ModelIdentity, experiment_id: str | None = None, max_queue: int = 10000,
                 max_batch: int = 500, linger_s: float = 0.05) -> None:
        self.identity = identity
        self.experiment_id = experiment_id
        self.dropped = 0
        self.failed = 0
        self.written = 0
        self.max_batch = max_batch
        self.linger_s = linger_s  # how long a first record waits for company before its batch is written
        self._reported: str | None = None
        self._queue: queue.Queue[list[Mapping[str, Any]] | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="genai-monitor-traces", daemon=True)
        self._thread.start()
        _flush_at_exit(self.flush_at_exit)

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        try:
            self._queue.put_nowait(list(records))
        except queue.Full:
            self.dropped += len(records)
            if self.dropped == len(records):
                log.warning("pytest-genai monitor: the trace queue is full (tracking slow or down): dropping records")

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued record was written (or counted as failed)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def flush_at_exit(self, timeout: float) -> None:
        """Flush, then say on stderr (the server's log) what could not be written: a loss is never silent."""
        self.flush(timeout)
        line = self.report_loss()
        if line and line != self._reported:  # atexit and the multiprocessing finalizer may both run
            self._reported = line
            print(line, file=sys.stderr, flush=True)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]  # a None item stops the thread once what came before it is written
            deadline = time.monotonic() + self.linger_s
            while items[-1] is not None and sum(len(i) for i in items if i) < self.max_batch:
                try:
                    items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            batch = [r for i in items if i for r in i]
            try:
                if batch:
                    self._write_retrying(batch)
            finally:
                for _ in items:
                    self._queue.task_done()
            if items[-1] is None:
                return

    def _write_retrying(self, batch: Sequence[Mapping[str, Any]]) -> None:
        """A batch is one transaction: a store that is briefly locked or unreachable gets RETRIES more tries
        (0.2 s, then 1 s later) before the batch is counted as failed and logged (once)."""
        for attempt, pause in enumerate((*RETRY_PAUSES_S, None)):
            try:
                self._write(batch)
                self.written += len(batch)
                return
            except Exception as exc:  # noqa: BLE001 - tracking down: retried, then counted, logged once
                if pause is not None:
                    log.debug("pytest-genai monitor: trace batch attempt %d failed: %s", attempt + 1, exc)
                    time.sleep(pause)
                    continue
                self.failed += len(batch)
                if self.failed == len(batch):
                    log.warning("pytest-genai monitor: traces could not be written: %s", exc)

    def report_loss(self) -> str | None:
        """One line when records were not written (failed, dropped or still queued), else None."""
        queued = self._queue.unfinished_tasks
        if not (self.failed or self.dropped or queued):
            return None
        return (f"pytest-genai monitor: {self.written} request record(s) written as traces; not written: "
                f"{self.failed} failed, {self.dropped} dropped (queue full), {queued} batch(es) still queued")

    def _write(self, records: Sequence[Mapping[str, Any]]) -> None:
        from mlflow.tracing.constant import TraceMetadataKey

        experiment_id = self.experiment_id or _current_experiment()
        traces = []
        for record in records:
            tags = {TAG_REQUEST_ID: str(record["request_id"])}
            metadata: dict[str, str] = {}
            if record.get("model_id"):
                tags[TAG_MODEL_ID] = str(record["model_id"])
                metadata[TraceMetadataKey.MODEL_ID] = str(record["model_id"])
            traces.append(request_trace(record, experiment_id, name=TRACE_NAME, tags=tags, metadata=metadata,
                                        attributes={ATTR_RECORD: json.dumps(record, separators=(",", ":"), default=str)}))
        log_traces(None, traces)


def _flush_at_exit(flush: Callable[[float], None]) -> None:
    """A server that is stopped still writes the records it was gathering: at interpreter exit (atexit), in a
    multiprocessing worker (which leaves through os._exit after its finalizers) and on SIGTERM, which uvicorn
    re-raises after its graceful shutdown so the process dies by the signal and atexit never runs. The SIGTERM
    handler is installed only where SIGTERM still has its default action, flushes, then dies by it as before."""
    import atexit
    import signal
    from multiprocessing import util

    atexit.register(flush, EXIT_FLUSH_S)
    util.Finalize(None, flush, args=(EXIT_FLUSH_S,), exitpriority=10)
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_term(signum: int, frame: Any) -> None:
        flush(EXIT_FLUSH_S)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, on_term)


def _current_experiment() -> str:
    """Where MLflow's fluent API would put a trace: $MLFLOW_EXPERIMENT_ID/NAME, else the default experiment."""
    from mlflow.tracking.fluent import _get_experiment_id

    return str(_get_experiment_id())


def sink_from_config(config: Any, identity: ModelIdentity, cwd: Path | None = None) -> Any:
    """The sink the bundle config (and the serving environment) asks for, or None for `off`."""
    section = config.get("monitor") or {}
    kind = os.environ.get(ENV_SINK) or section.get("sink") or DEFAULT_SINK
    if kind not in SINKS:
        raise SinkError(f"monitor.sink {kind!r} is not one of {', '.join(SINKS)}")
    if kind == "off":
        return None
    if kind == "local":
        return LocalSink(local_path(section.get("path"), cwd))
    return MlflowTraceSink(identity, experiment_id=_model_experiment(identity))


def local_path(configured: str | None, cwd: Path | None = None) -> Path:
    raw = os.environ.get(ENV_PATH) or configured or DEFAULT_PATH
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (cwd or Path.cwd()) / path


def _model_experiment(identity: ModelIdentity) -> str | None:
    """Traces go to the experiment of the LoggedModel (where its eval run is), read once at load."""
    if not identity.model_id:
        return None
    try:
        return str(mlflow_client.client(own_process=False).get_logged_model(identity.model_id).experiment_id)
    except Exception as exc:  # noqa: BLE001 - tracking down at load: traces go to the active experiment
        log.warning("pytest-genai monitor: cannot read LoggedModel %s (%s): traces go to the default experiment",
                    identity.model_id, exc)
        return None


# --------------------------------------------------------------------------- reading

def read_local(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSONL sink; a torn last line (a writer killed mid-write) is skipped."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise SinkError(f"the local sink {path} does not exist: nothing was recorded there (is the model served "
                        f"from another directory, or with {ENV_PATH} set?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SinkError(f"the local sink {path} cannot be read: {exc}") from None
    out: list[dict[str, Any]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise SinkError(f"{path}:{i + 1} is not a request record (not JSON)") from None
        if not isinstance(record, dict) or "request_id" not in record or "ts" not in record:
            raise SinkError(f"{path}:{i + 1} is not a request record (no request_id/ts)")
        out.append(record)
    return out


def read_traces(experiment_ids: Iterable[str], model_id: str) -> list[dict[str, Any]]:
    """The records behind the traces of `model_id` (tracking URI: MLflow's current one)."""
    client = mlflow_client.client(own_process=False)
    out: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.search_traces(locations=list(experiment_ids), filter_string=f"tags.`{TAG_MODEL_ID}` = '{model_id}'",
                                    max_results=500, page_token=token)
        for trace in page:
            for span in trace.data.spans:
                raw = span.attributes.get(ATTR_RECORD)
                if raw:
                    out.append(json.loads(raw) if isinstance(raw, str) else dict(raw))
                    break
        token = page.token
        if not token:
            return out
