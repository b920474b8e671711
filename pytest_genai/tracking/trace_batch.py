"""Case traces to an HTTP tracking server in a few requests instead of one request a trace.

MLflow's server has no batch call for trace infos and assessments (each `start_trace` is a request, ~15 ms of
server and database time here) and its OTLP span intake costs ~5 ms a case; a run of 500 cases spent 9 s on its
traces. pytest-genai's server app, `genai-basic-auth` (what `make server` runs: MLflow's own basic-auth app plus
one endpoint, `BATCH_PATH`), takes a run's traces a few hundred per request and writes each request in one
transaction with the SQL writer (`trace_sql.write_sql`): the rows MLflow's `start_trace` and `log_spans` write,
so the UI, `search_traces` and the assessments read them exactly as the per-trace calls leave them.

The endpoint authorizes a request as MLflow authorizes `start_trace` with assessments (EDIT on the experiment,
the trace and assessment kinds not denied; admins always); anything it cannot check is refused. A server
without the endpoint (any stock `mlflow server`: 404/405), or that refuses the batch (403, 501: not a SQL
store), gets the per-trace calls instead (`mlflow_traces.log_traces`), which MLflow authorizes itself."""

from __future__ import annotations

import base64
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from pytest_genai.tracking.trace_sql import CaseTrace, write_sql

APP_NAME = "genai-basic-auth"  # the `mlflow.app` entry point: `mlflow server --app-name genai-basic-auth`
BATCH_PATH = "/api/3.0/pytest-genai/traces/batch-write"
BATCH_TRACES = 200  # traces a request (~1 MB of JSON for a small case)
BATCH_BYTES = 8 * 1024 * 1024  # ... or fewer, when the cases are large
IN_FLIGHT = 2  # requests at once: the server writes one while it reads the next (2 workers)
MAX_TRACES = 1000  # the server refuses more in one request
MAX_BODY = 64 * 1024 * 1024
FALLBACK = frozenset({403, 404, 405, 501})  # no endpoint, or not for this user/store: the per-trace calls
TRACE_ID = re.compile(r"tr-[0-9a-f]{32}\Z")
SPAN_KEYS = frozenset({"trace_id", "span_id", "parent_span_id", "name", "start_time_unix_nano", "end_time_unix_nano",
                       "events", "status", "attributes", "links"})
STATES = frozenset({"OK", "ERROR"})


# --------------------------------------------------------------------------- client

def send(store: Any, traces: Sequence[CaseTrace]) -> bool:
    """POST the traces in batches to the store's server; False, with nothing written, when the server has no
    batch endpoint (or refuses it): the caller then uses the per-trace calls. Each batch is one transaction."""
    experiment = traces[0].info.experiment_id
    if any(t.info.experiment_id != experiment for t in traces):
        raise ValueError("a trace batch goes to one experiment")
    bodies = batches(traces)
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = [pool.submit(_post, store, body) for body in bodies]
        for future in futures:
            if not future.result():  # no endpoint (or not for us): the requests not yet sent never are
                for later in futures:
                    later.cancel()
                break
        taken = [f.result() for f in futures if not f.cancelled()]
    if all(taken):
        return True
    if any(taken):  # the server changed its answer between two requests of one run
        raise RuntimeError(f"the server took some trace batches at {BATCH_PATH} and refused others: "
                           f"{sum(taken)} of {len(bodies)} written")
    return False


def _post(store: Any, body: bytes) -> bool:
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    response = http_request(store.get_host_creds(), BATCH_PATH, "POST", data=body,
                            extra_headers={"Content-Type": "application/json"})
    if response.status_code in FALLBACK:
        return False
    verify_rest_response(response, BATCH_PATH)  # raises with the server's message (400, 401, 409, 413, 5xx)
    return True


def batches(traces: Sequence[CaseTrace]) -> list[bytes]:
    """The request bodies: BATCH_TRACES traces or BATCH_BYTES of JSON each, whichever comes first."""
    head = json.dumps({"experiment_id": traces[0].info.experiment_id})[:-1].encode() + b',"traces":['
    out: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for t in traces:
        part = json.dumps(_wire(t), ensure_ascii=False, separators=(",", ":")).encode()
        if parts and (len(parts) == BATCH_TRACES or size + len(part) > BATCH_BYTES):
            out.append(head + b",".join(parts) + b"]}")
            parts, size = [], 0
        parts.append(part)
        size += len(part) + 1
    return out + [head + b",".join(parts) + b"]}"]


def _wire(t: CaseTrace) -> dict[str, Any]:
    i = t.info
    return {"trace_id": i.trace_id, "request_time": i.request_time, "execution_duration": i.execution_duration,
            "state": i.state.value, "request_preview": i.request_preview, "response_preview": i.response_preview,
            "trace_metadata": i.trace_metadata, "tags": i.tags,
            "assessments": [{"name": a.name, "value": a.feedback.value, "rationale": a.rationale,
                             "source_type": a.source.source_type, "source_id": a.source.source_id,
                             "create_time_ms": a.create_time_ms} for a in i.assessments],
            "spans": t.spans}


# --------------------------------------------------------------------------- server

def decode(payload: Any) -> list[CaseTrace]:
    """A request's body back to the traces, checked: one experiment, trace ids of our form, spans of their own
    trace in MLflow's span layout, feedback assessments. ValueError names what is wrong."""
    from mlflow.entities import AssessmentSource, Feedback, TraceInfo, TraceLocation, TraceState

    if not isinstance(payload, dict) or not isinstance(payload.get("experiment_id"), str) \
            or not payload["experiment_id"].isdigit():
        raise ValueError("expected a JSON object with experiment_id (digits) and traces")
    experiment, items = payload["experiment_id"], payload.get("traces")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_TRACES:
        raise ValueError(f"traces: expected a list of 1 to {MAX_TRACES}")
    out: list[CaseTrace] = []
    seen: set[str] = set()
    for n, item in enumerate(items):
        where = f"traces[{n}]"
        if not isinstance(item, dict) or not isinstance(item.get("trace_id"), str) or not TRACE_ID.match(item["trace_id"]):
            raise ValueError(f"{where}.trace_id: expected tr- and 32 hex digits")
        tid = item["trace_id"]
        if tid in seen:
            raise ValueError(f"{where}.trace_id: {tid} twice in one batch")
        seen.add(tid)
        if item.get("state") not in STATES:
            raise ValueError(f"{where}.state: expected one of {sorted(STATES)}")
        times = (item.get("request_time"), item.get("execution_duration"))
        if not all(type(v) is int and v >= 0 for v in times):
            raise ValueError(f"{where}: request_time and execution_duration must be integers >= 0")
        previews = (item.get("request_preview"), item.get("response_preview"))
        if not all(v is None or isinstance(v, str) for v in previews):
            raise ValueError(f"{where}: the previews must be strings")
        metadata, tags = _strings(item.get("trace_metadata"), f"{where}.trace_metadata"), _strings(item.get("tags"), f"{where}.tags")
        assessments = [Feedback(name=a["name"], value=a["value"], rationale=a.get("rationale"), trace_id=tid,
                                source=AssessmentSource(source_type=a["source_type"], source_id=a.get("source_id")),
                                create_time_ms=a.get("create_time_ms"), last_update_time_ms=a.get("create_time_ms"))
                       for a in _assessments(item.get("assessments"), f"{where}.assessments")]
        spans = _spans(item.get("spans"), tid, f"{where}.spans")
        info = TraceInfo(trace_id=tid, trace_location=TraceLocation.from_experiment_id(experiment),
                         request_time=times[0], execution_duration=times[1], state=TraceState(item["state"]),
                         request_preview=previews[0], response_preview=previews[1], trace_metadata=metadata,
                         tags=tags, assessments=assessments)
        out.append(CaseTrace(info, spans))
    return out


def _strings(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{where}: expected an object of strings")
    return value


def _assessments(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("source_type"), str)
            and "value" in a and (a.get("rationale") is None or isinstance(a["rationale"], str))
            and (a.get("create_time_ms") is None or type(a["create_time_ms"]) is int) for a in value):
        raise ValueError(f"{where}: expected a list of feedback (name, value, rationale, source_type, source_id)")
    return value


def _spans(value: Any, trace_id: str, where: str) -> tuple[dict[str, Any], ...]:
    """MLflow's `Span.to_dict()` layout, every span of this trace: what the spans table keeps as content."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: expected a non-empty list of spans")
    otel_trace = _b64(trace_id[3:])
    for n, s in enumerate(value):
        ok = (isinstance(s, dict) and s.keys() == SPAN_KEYS and s["trace_id"] == otel_trace
              and _is_id(s["span_id"]) and (s["parent_span_id"] is None or _is_id(s["parent_span_id"]))
              and isinstance(s["name"], str) and all(type(s[k]) is int and s[k] >= 0
                                                     for k in ("start_time_unix_nano", "end_time_unix_nano"))
              and isinstance(s["attributes"], dict) and isinstance(s["attributes"].get("mlflow.spanType"), str)
              and all(isinstance(k, str) and isinstance(v, str) for k, v in s["attributes"].items())
              and isinstance(s["status"], dict) and s["status"].get("code") in ("STATUS_CODE_OK", "STATUS_CODE_ERROR")
              and isinstance(s["events"], list) and isinstance(s["links"], list))
        if not ok:
            raise ValueError(f"{where}[{n}]: not a span of {trace_id} in MLflow's span layout")
    roots = sum(1 for s in value if s["parent_span_id"] is None)
    if roots != 1:
        raise ValueError(f"{where}: expected one root span, got {roots}")
    return tuple(value)


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode("ascii")


def _is_id(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == 8
    except ValueError:
        return False


def create_app() -> Any:
    """The `genai-basic-auth` server app: MLflow's basic-auth app (users, permissions) with `BATCH_PATH` added."""
    from mlflow.server import app, auth

    if not any(rule.rule == BATCH_PATH for rule in app.url_map.iter_rules()):
        app.add_url_rule(BATCH_PATH, "pytest_genai_trace_batch", _serve, methods=["POST"])
    validators = getattr(auth, "BEFORE_REQUEST_VALIDATORS", None)
    if isinstance(validators, dict):  # else basic-auth refuses the path to all but admins (its fail-closed default)
        validators[(BATCH_PATH, "POST")] = _validate
    return auth.create_app(app)


def _validate() -> bool:
    """basic-auth's check before the request (non-admins): the experiment it writes to, as for start_trace."""
    payload = _payload()
    return isinstance(payload, dict) and _allowed(payload.get("experiment_id"), _has_assessments(payload))


def _payload() -> Any:
    """The request's JSON (parsed once, Flask keeps it), read up to MAX_BODY bytes (413 past it)."""
    from flask import request

    try:
        request.max_content_length = MAX_BODY  # this request only (Flask >= 3.1): artifact uploads keep theirs
    except AttributeError:
        if (request.content_length or 0) > MAX_BODY:
            return None
    return request.get_json(silent=True)


def _has_assessments(payload: dict[str, Any]) -> bool:
    items = payload.get("traces")
    return not isinstance(items, list) or any(not isinstance(t, dict) or t.get("assessments") for t in items)


def _allowed(experiment_id: Any, assessments: bool) -> bool:
    """What MLflow's basic-auth requires of `start_trace` (StartTraceV3) with assessments: admin, or EDIT on the
    experiment with the trace and assessment kinds not denied. Anything unexpected refuses (403: the client then
    uses the per-trace calls, which MLflow authorizes itself)."""
    if not isinstance(experiment_id, str) or not experiment_id.isdigit():
        return False
    try:
        from mlflow.server import auth

        if auth.sender_is_admin():
            return True
        check = getattr(auth, "_authorize_create_in_experiment", None)  # what validate_can_start_trace_v3 calls
        if check is None:
            return False
        extra = (auth.Requirement(auth.RESOURCE_TYPE_ASSESSMENT, "*", auth.ACTION_NOT_DENIED),) if assessments else ()
        return check(experiment_id, auth.RESOURCE_TYPE_TRACE, extra) is True
    except Exception:  # an auth module of another MLflow version: refuse, never guess
        return False


def _serve() -> Any:
    from flask import Response
    from mlflow.exceptions import MlflowException
    from mlflow.server import handlers

    payload = _payload()
    try:
        traces = decode(payload)
    except (ValueError, TypeError, KeyError, MlflowException) as exc:
        return _error(400, "INVALID_PARAMETER_VALUE", f"invalid trace batch: {exc}")
    if not _allowed(payload["experiment_id"], any(t.info.assessments for t in traces)):
        return _error(403, "PERMISSION_DENIED", f"not allowed to write traces to experiment {payload['experiment_id']}")
    store = handlers._get_tracking_store()
    if not hasattr(store, "ManagedSessionMaker"):
        return _error(501, "NOT_IMPLEMENTED", "this server's tracking store is not a SQL store: use start_trace")
    try:
        write_sql(store, traces)
    except MlflowException as exc:  # a missing experiment is a bad batch here: 404 means "no endpoint" to clients
        status = exc.get_http_status_code()
        return Response(exc.serialize_as_json(), status=400 if status in FALLBACK else status,
                        mimetype="application/json")
    return Response(json.dumps({"traces": len(traces)}), status=200, mimetype="application/json")


def _error(status: int, code: str, message: str) -> Any:
    from flask import Response

    return Response(json.dumps({"error_code": code, "message": message}), status=status, mimetype="application/json")
