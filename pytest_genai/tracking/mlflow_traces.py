"""Each case of a run as one MLflow trace linked to its eval run, so the MLflow UI's Traces tab shows what every
case did: a root span with spans for retrieve, render, generate and score under it; attributes for tokens,
latency, model, chunk ids and scores; assessments for em, f1, pass, safety flags and registered per-case scores.

Traces are built after the session from the run record's case results (already sanitized: nothing here adds
data the record does not hold), never inside a case, and written in batches: on a SQL store (sqlite,
PostgreSQL) in one transaction through MLflow's own table models (`trace_sql.py`), which costs about 1 ms a case
where the public one-trace-at-a-time API costs ~10 ms; on an HTTP server running pytest-genai's app (`make
server`) a few hundred a request to its batch endpoint, written there the same way (`trace_batch.py`); on any
other server with MLflow's public `start_trace` on a small thread pool and `log_spans` in chunks. All are read
back by the same public API in the tests (`MlflowClient.search_traces(run_id=...)`)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from pytest_genai.sanitize import headline
from pytest_genai.tracking import trace_batch, trace_sql
from pytest_genai.tracking.trace_sql import CaseTrace
from pytest_genai.types import CaseResult

_encode_str = json.encoder.encode_basestring  # what json.dumps(str, ensure_ascii=False) returns, without its set-up

SOURCE_ID = "pytest-genai"
TAG_CASE_ID = "genai.case_id"
SPAN_BATCH = 2500  # spans per log_spans call on the public path (MLflow groups them by trace)
POOL = 8  # start_trace calls in flight on the public path (an HTTP server answers them concurrently)
PREVIEW_CHARS = 1000  # MLflow's request/response preview columns hold 1000 characters


@dataclass(frozen=True)
class TraceContext:
    """What every case trace of a run shares."""

    experiment_id: str
    run_id: str
    model: str | None = None  # llm.model_id
    provider: str | None = None  # llm.provider
    prompt: str | None = None  # id@version
    config_hash: str = ""


def trace_id_for(run_id: str, case_id: str) -> str:
    """Deterministic per (run, case): re-logging a run never duplicates its traces."""
    return "tr-" + hashlib.sha256(f"{run_id}\0{case_id}".encode()).hexdigest()[:32]


def build_traces(results: Iterable[CaseResult], ctx: TraceContext, fallback_start_ms: float) -> list[CaseTrace]:
    return [build_case_trace(r, ctx, fallback_start_ms) for r in results]


def build_case_trace(r: CaseResult, ctx: TraceContext, fallback_start_ms: float) -> CaseTrace:
    from mlflow.entities import AssessmentSource, Feedback, TraceInfo, TraceLocation, TraceState
    from mlflow.tracing.constant import TraceMetadataKey, TraceTagKey

    trace_id = trace_id_for(ctx.run_id, r.id)
    start_ms = r.started_ms if r.started_ms is not None and math.isfinite(r.started_ms) else fallback_start_ms
    latency = r.latency_ms if math.isfinite(r.latency_ms) else 0.0
    spans = _spans(r, ctx, trace_id, int(start_ms * 1e6), latency)
    end_ns = max(s["end_time_unix_nano"] for s in spans)
    source = AssessmentSource(source_type="CODE", source_id=SOURCE_ID)
    passed = r.error is None and not r.expect_failures
    values: list[tuple[str, Any, str | None]] = [("em", float(r.em), None), ("f1", float(r.f1), None),
                                                 ("pass", passed, _why_failed(r))]
    if r.safety_flags is not None:
        values.append(("safety_flags", list(r.safety_flags), "blocked" if r.blocked else None))
    if r.pass_rate is not None:  # sampled repeats: the share that passed (rationale: how many of how many)
        values.append(("pass_rate", float(r.pass_rate), f"{r.repeats.get('passed')} of {r.repeats.get('n')} repeats passed"))
    values += [(name, float(v), None) for name, v in sorted(r.scores.items()) if _finite(v)]
    assessments = [Feedback(name=name, value=value, rationale=why, source=source, trace_id=trace_id)
                   for name, value, why in values]
    metadata = {TraceMetadataKey.SOURCE_RUN: ctx.run_id, TAG_CASE_ID: r.id,
                TraceMetadataKey.TOKEN_USAGE: json.dumps({"input_tokens": r.input_tokens,
                                                          "output_tokens": r.output_tokens,
                                                          "total_tokens": r.input_tokens + r.output_tokens})}
    info = TraceInfo(
        trace_id=trace_id, trace_location=TraceLocation.from_experiment_id(ctx.experiment_id),
        request_time=int(start_ms), execution_duration=max(0, (end_ns - int(start_ms * 1e6)) // 1_000_000),
        state=TraceState.ERROR if r.error else TraceState.OK,
        request_preview=_preview(json.dumps({"question": r.question}, ensure_ascii=False)),
        response_preview=_preview(json.dumps(r.answer if r.error is None else {"error": r.error}, ensure_ascii=False)),
        trace_metadata=metadata,
        tags={TraceTagKey.TRACE_NAME: f"case {r.id}", TAG_CASE_ID: r.id, "genai.passed": str(passed).lower()},
        assessments=assessments)
    return CaseTrace(info, tuple(spans))


def _spans(r: CaseResult, ctx: TraceContext, trace_id: str, start_ns: int, latency_ms: float) -> list[Any]:
    """Root [call .. scored]; retrieve, render and generate laid end to end inside the pipeline's latency (their
    measured durations where the pipeline reports them); score after the call."""
    t = r.timings
    retrieve_ms = float(t.get("retrieval_ms", 0.0)) if r.retrieved else 0.0
    render_ms = float(t.get("render_ms", 0.0))
    generate_ms = float(t["llm_ms"]) if "llm_ms" in t else max(0.0, latency_ms - retrieve_ms - render_ms)
    score_ms = float(t.get("score_ms", 0.0))
    call_end = start_ns + int(latency_ms * 1e6)

    def ns(ms: float) -> int:  # a stage's duration, never past the end of the call (a pipeline's latency wins)
        return max(0, min(int(ms * 1e6), call_end - cursor))

    out: list[Any] = []
    cursor = start_ns
    children: list[tuple[str, str, int, int, Any, Any, dict[str, Any]]] = []
    if r.retrieved:
        ids = [_chunk_id(h) for h in r.retrieved]
        docs = [{"id": _chunk_id(h), "page_content": _chunk_label(h),  # the record keeps ids and scores, not texts
                 "metadata": {k: h.get(k) for k in ("doc_id", "score", "rank", "used") if k in h}} for h in r.retrieved]
        children.append(("retrieve", "RETRIEVER", cursor, cursor + ns(retrieve_ms), {"query": r.question}, docs,
                         {"genai.chunk_ids": ids, "genai.chunk_scores": [h.get("score") for h in r.retrieved]}))
        cursor += ns(retrieve_ms)
    if r.prompt is not None:
        children.append(("render", "PARSER", cursor, cursor + ns(render_ms), {"question": r.question,
                                                                              "prompt": ctx.prompt}, r.prompt, {}))
        cursor += ns(render_ms)
    usage = {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
             "total_tokens": r.input_tokens + r.output_tokens}
    gen_attrs: dict[str, Any] = {"mlflow.chat.tokenUsage": usage, "genai.latency_ms": latency_ms,
                                 "mlflow.llm.cost": {"total_cost": r.cost_usd}}
    if ctx.model:
        gen_attrs["mlflow.llm.model"] = ctx.model
    if ctx.provider:
        gen_attrs["mlflow.llm.provider"] = ctx.provider
    if r.cached is not None:
        gen_attrs["genai.cached"] = r.cached
    children.append(("generate", "LLM", cursor, cursor + ns(generate_ms),
                     r.prompt if r.prompt is not None else {"question": r.question}, r.answer, gen_attrs))
    scored = {"em": r.em, "f1": r.f1, "passed": r.error is None and not r.expect_failures,
              "expect_failures": list(r.expect_failures), "safety_flags": list(r.safety_flags or ()),
              "blocked": r.blocked, **{k: v for k, v in r.scores.items() if _finite(v)}}
    for k in ("hit_at_k", "recall_at_k", "reciprocal_rank", "context_used", "toxicity", "pass_rate", "flip"):
        if getattr(r, k) is not None:
            scored[k] = getattr(r, k)
    score_end = call_end + int(score_ms * 1e6)  # scoring runs after the call
    children.append(("score", "EVALUATOR", call_end, score_end, {"answer": r.answer, "gold": list(r.answers)}, scored, {}))
    end_ns = max([score_end] + [c[3] for c in children])
    root_attrs: dict[str, Any] = {"genai.case_id": r.id, "genai.seed": r.seed, "genai.latency_ms": latency_ms,
                                  "genai.config_hash": ctx.config_hash, "mlflow.chat.tokenUsage": usage}
    if ctx.model:
        root_attrs["mlflow.llm.model"] = ctx.model
    status = ("ERROR", r.error) if r.error else ("OK", "")
    out.append(_span(trace_id, 1, None, f"case {r.id}", "CHAIN", start_ns, end_ns, {"question": r.question},
                     r.answer if r.error is None else {"error": r.error}, root_attrs, status))
    for i, (name, kind, s, e, inputs, outputs, attrs) in enumerate(children, start=2):
        st = status if name == "generate" else ("OK", "")
        out.append(_span(trace_id, i, 1, name, kind, s, max(s, e), inputs, outputs, attrs, st))
    return out


def request_trace(record: Mapping[str, Any], experiment_id: str, *, name: str, tags: Mapping[str, str],
                  metadata: Mapping[str, str], attributes: Mapping[str, Any]) -> CaseTrace:
    """A served request (a monitor record, already sanitized) as a one-span trace: the request id is the trace id,
    so a trace written twice is one trace."""
    from mlflow.entities import TraceInfo, TraceLocation, TraceState
    from mlflow.tracing.constant import TraceMetadataKey, TraceTagKey

    raw_id = str(record["request_id"])
    trace_id = "tr-" + (raw_id if len(raw_id) == 32 and all(c in "0123456789abcdef" for c in raw_id)
                        else hashlib.sha256(raw_id.encode()).hexdigest()[:32])
    start_ns = int(float(record["ts"]) * 1e9)
    latency = float(record.get("latency_ms") or 0.0)
    end_ns = start_ns + int(latency * 1e6)
    error = record.get("error")
    usage = {"input_tokens": int(record.get("input_tokens") or 0), "output_tokens": int(record.get("output_tokens") or 0)}
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    span = _span(trace_id, 1, None, name, "CHAIN", start_ns, end_ns, {"question": record.get("question")},
                 {"answer": record.get("answer")}, {**attributes, "mlflow.chat.tokenUsage": usage},
                 ("ERROR", str(error)) if error else ("OK", ""))
    info = TraceInfo(
        trace_id=trace_id, trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=start_ns // 1_000_000, execution_duration=int(latency), state=TraceState.ERROR if error else TraceState.OK,
        request_preview=_preview(json.dumps({"question": record.get("question")}, ensure_ascii=False)),
        response_preview=_preview(json.dumps({"answer": record.get("answer")}, ensure_ascii=False)),
        trace_metadata={**metadata, TraceMetadataKey.TOKEN_USAGE: json.dumps(usage)},
        tags={TraceTagKey.TRACE_NAME: name, **tags}, assessments=[])
    return CaseTrace(info, (span,))


def _span(trace_id: str, span_id: int, parent: int | None, name: str, kind: str, start_ns: int, end_ns: int,
          inputs: Any, outputs: Any, attributes: Mapping[str, Any], status: tuple[str, str]) -> dict[str, Any]:
    """A finished span as plain data in MLflow's `Span.to_dict()` layout (base64 OTel ids, attribute values
    JSON-encoded as MLflow stores them). No OpenTelemetry objects: building and dumping them cost more than the
    rest of a case's trace; `tests/test_mlflow_native.py` checks the layout round-trips through `Span.from_dict`."""
    from mlflow.tracing.constant import SpanAttributeKey

    otel_trace = int(trace_id[3:], 16)
    attrs = {SpanAttributeKey.REQUEST_ID: json.dumps(trace_id), SpanAttributeKey.SPAN_TYPE: json.dumps(kind),
             SpanAttributeKey.INPUTS: _json(inputs), SpanAttributeKey.OUTPUTS: _json(outputs)}
    attrs.update({k: _json(v) for k, v in attributes.items()})
    error = status[0] == "ERROR"
    events: list[dict[str, Any]] = []
    if error and status[1]:  # the UI shows a span's exception from its event (OTel's convention)
        last = headline(status[1], status[1])
        events.append({"name": "exception", "time_unix_nano": end_ns, "attributes": {
            "exception.type": last.split(":", 1)[0][:200],  # OTel's convention: the message without the type
            "exception.message": (last.split(":", 1)[1].strip() if ":" in last else last)[:2000],
            "exception.stacktrace": status[1][:20000]}})
    return {"trace_id": _b64(otel_trace, 16), "span_id": _b64(span_id, 8),
            "parent_span_id": _b64(parent, 8) if parent is not None else None, "name": name,
            "start_time_unix_nano": start_ns, "end_time_unix_nano": end_ns, "events": events,
            "status": {"code": "STATUS_CODE_ERROR" if error else "STATUS_CODE_OK",
                       "message": status[1][:500] if error else ""},
            "attributes": attrs, "links": []}


def _b64(value: int, size: int) -> str:
    return base64.b64encode(value.to_bytes(size, "big")).decode("ascii")


def _chunk_id(hit: Mapping[str, Any]) -> str:
    """A retrieved hit's chunk id, else its doc id (a custom pipeline may report only documents)."""
    for key in ("chunk_id", "doc_id"):
        if hit.get(key) is not None:
            return str(hit[key])
    return "?"


def _chunk_label(hit: Mapping[str, Any]) -> str:
    """What the UI's retriever view shows for a document: rank, doc, chunk, score, whether it reached the prompt."""
    bits = [f"#{hit['rank']}" if hit.get("rank") is not None else "", str(hit.get("doc_id") or ""),
            f"chunk {hit['chunk_id']}" if hit.get("chunk_id") is not None else "",
            f"score {hit['score']:.4f}" if isinstance(hit.get("score"), (int, float)) else "",
            {True: "in the prompt", False: "over the context budget"}.get(hit.get("used"), "")]  # type: ignore[arg-type]
    return " · ".join(b for b in bits if b)


def _json(value: Any) -> str:
    if type(value) is str:  # most attribute values: the C string encoder, as json.dumps would call it
        return _encode_str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _preview(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def _why_failed(r: CaseResult) -> str | None:
    if r.error:
        return headline(r.error, "error")[:300]
    return "; ".join(r.expect_failures)[:300] if r.expect_failures else None


# --------------------------------------------------------------------------- writing

def log_traces(uri: str | None, traces: Sequence[CaseTrace], *, bulk: bool | None = None,
               batch: bool = True) -> str:
    """Write the run's traces; returns how: "bulk" (SQL inserts in this process: a sqlite or database URI),
    "batch" (an HTTP server with pytest-genai's batch endpoint, `trace_batch.py`) or "api" (MLflow's public
    per-trace calls: any other server). `bulk=None` picks the SQL path when the store is MLflow's SqlAlchemyStore;
    `bulk=False` and `batch=False` force the public API (the tests read every path back the same way)."""
    if not traces:
        return "none"
    from mlflow.tracing.client import TracingClient

    client = TracingClient(uri)
    store = client.store
    if bulk is None:
        bulk = type(store).__name__ == "SqlAlchemyStore" and hasattr(store, "ManagedSessionMaker")
    if bulk:
        trace_sql.write_sql(store, traces)
        return "bulk"
    if batch and hasattr(store, "get_host_creds") and trace_batch.send(store, traces):
        return "batch"
    _write_api(client, traces)
    return "api"


def _write_api(client: Any, traces: Sequence[CaseTrace]) -> None:
    """MLflow's public calls: `start_trace` (info, metadata, tags, assessments) per trace on a pool, then the spans
    in chunks (one OTLP request each on a server)."""
    location = traces[0].info.experiment_id
    with ThreadPoolExecutor(POOL) as pool:
        list(pool.map(client.start_trace, [t.info for t in traces]))
    from mlflow.entities import Span

    spans = [Span.from_dict(s) for t in traces for s in t.spans]
    for i in range(0, len(spans), SPAN_BATCH):
        client.log_spans(location, spans[i:i + SPAN_BATCH])
