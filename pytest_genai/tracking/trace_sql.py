"""A case trace as it is stored (`CaseTrace`: MLflow's TraceInfo and the spans as MLflow's span dicts) and its SQL
writer: one transaction of executemany inserts into MLflow's own tables, the rows its `start_trace` and
`log_spans` write, for a SQL store (sqlite, PostgreSQL, MySQL). Used in the session's process for a local store,
and inside the tracking server by the batch endpoint (`trace_batch.py`): either way a run's traces cost about a
millisecond a case where MLflow's one-trace-at-a-time calls cost ten or more."""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class CaseTrace:
    """One case's trace: its TraceInfo entity (metadata, tags, assessments) and its spans as plain data, laid out
    as MLflow's `Span.to_dict()` (what the SQL store keeps per span and `Span.from_dict` reads)."""

    info: Any  # mlflow.entities.TraceInfo
    spans: tuple[dict[str, Any], ...]  # the root first


def span_columns(span: Mapping[str, Any]) -> dict[str, Any]:
    """What the `spans` table keeps beside the content: hex ids, type and status, as MLflow's `log_spans` fills them."""
    parent = span["parent_span_id"]
    return {"span_id": base64.b64decode(span["span_id"]).hex(),
            "parent_span_id": base64.b64decode(parent).hex() if parent else None,
            "type": json.loads(span["attributes"]["mlflow.spanType"]),
            "status": "ERROR" if span["status"]["code"] == "STATUS_CODE_ERROR" else "OK"}


def write_sql(store: Any, traces: Sequence[CaseTrace]) -> None:
    """One transaction of executemany inserts into MLflow's own tables: the rows its `start_trace` writes for a
    trace (trace_info with the token columns, tags, metadata, assessments) and the rows its `log_spans` writes
    for the spans (content = the span's dict), then the UI's daily rollups marked for rebuild, as both do. The
    ORM would cost ~3 ms a case; plain inserts cost a fraction of one."""
    from mlflow.store.tracking.dbmodels.models import (
        SqlAssessments,
        SqlSpan,
        SqlTraceInfo,
        SqlTraceMetadata,
        SqlTraceTag,
    )
    from mlflow.store.tracking.utils.trace_analytics import PROMOTED_TRACE_METADATA_KEYS, analytics_columns_from_metadata
    from mlflow.store.tracking.utils.trace_analytics import assessment_aggregate as aggregate
    from mlflow.tracing.constant import SpansLocation, TraceMetadataKey, TraceTagKey
    from sqlalchemy import insert

    experiment_id = traces[0].info.experiment_id
    now = int(time.time() * 1000)
    infos: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    metadata_rows: list[dict[str, Any]] = []
    assessments: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    ascii_only = getattr(store, "db_type", "") == "mssql"  # as MLflow stores span content there (a VARCHAR column)
    with store.ManagedSessionMaker(read_only=False) as session:
        experiment = store.get_experiment(experiment_id)
        store._check_experiment_is_active(experiment)
        for t in traces:
            info, tid = t.info, t.info.trace_id
            metadata = dict(info.trace_metadata)
            columns = [span_columns(data) for data in t.spans]
            infos.append({"request_id": tid, "experiment_id": int(experiment_id), "timestamp_ms": info.request_time,
                          "execution_time_ms": info.execution_duration, "status": info.state.value,
                          "client_request_id": None, "request_preview": info.request_preview,
                          "response_preview": info.response_preview, "db_payload_generation": 1,  # as after log_spans
                          "trace_name": info.tags.get(TraceTagKey.TRACE_NAME),
                          **_analytics(analytics_columns_from_metadata(metadata), t.spans, columns)})
            location = store._get_trace_artifact_location_tag(experiment, tid)
            tags += [{"request_id": tid, "key": k, "value": v} for k, v in info.tags.items() if k != TraceTagKey.TRACE_NAME]
            tags += [{"request_id": tid, "key": location.key, "value": location.value},
                     {"request_id": tid, "key": TraceTagKey.SPANS_LOCATION,  # the spans are in the DB, not artifacts
                      "value": SpansLocation.TRACKING_STORE.value}]
            for key in PROMOTED_TRACE_METADATA_KEYS:  # kept in their columns
                metadata.pop(key, None)
            metadata[TraceMetadataKey.TRACE_INFO_FINALIZED] = "true"
            metadata_rows += [{"request_id": tid, "key": k, "value": v} for k, v in sorted(metadata.items())]
            assessments += [_assessment_row(a, tid, int(experiment_id), info.request_time, now, aggregate)
                            for a in info.assessments]
            for data, cols in zip(t.spans, columns):
                attributes = data["attributes"]
                spans.append({
                    "trace_id": tid, "experiment_id": int(experiment_id), **cols, "name": data["name"],
                    "start_time_unix_nano": data["start_time_unix_nano"],
                    "end_time_unix_nano": data["end_time_unix_nano"], "content": json.dumps(data, ensure_ascii=ascii_only),
                    "input_cost": None, "output_cost": None, "total_cost": _cost(attributes.get("mlflow.llm.cost")),
                    "model_name": _attr(attributes.get("mlflow.llm.model")),
                    "model_provider": _attr(attributes.get("mlflow.llm.provider")),
                })
        _enqueue_rollups(session, experiment_id, traces)
        for model, rows in ((SqlTraceInfo, _uniform(infos)), (SqlTraceTag, tags), (SqlTraceMetadata, metadata_rows),
                            (SqlAssessments, _uniform(assessments)), (SqlSpan, spans)):
            if rows:
                session.execute(insert(model.__table__), rows)


def _analytics(given: dict[str, Any], spans: Sequence[dict[str, Any]], columns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The trace's token and cost columns: from its metadata (`given`, as `start_trace` fills them), and a group
    the metadata left empty summed over the spans, as `log_spans` then fills it (the cost, for a case trace)."""
    from mlflow.store.tracking.utils.trace_analytics import (
        COST_COLUMN_BY_KEY,
        TOKEN_COLUMN_BY_KEY,
        finite_float_or_none,
        token_count_or_none,
    )
    from mlflow.tracing.constant import SpanAttributeKey
    from mlflow.tracing.utils import SpanAggregationNode, aggregate_cost_from_span_nodes, aggregate_usage_from_span_nodes

    out = dict(given)
    for key, aggregate, by_key, convert in ((SpanAttributeKey.CHAT_USAGE, aggregate_usage_from_span_nodes,
                                            TOKEN_COLUMN_BY_KEY, token_count_or_none),
                                           (SpanAttributeKey.LLM_COST, aggregate_cost_from_span_nodes,
                                            COST_COLUMN_BY_KEY, finite_float_or_none)):
        if any(given.get(column) is not None for column in by_key.values()):
            continue
        nodes = []
        for data, cols in zip(spans, columns):
            raw = data["attributes"].get(key)
            try:
                value = json.loads(raw) if isinstance(raw, str) else None
            except ValueError:
                value = None
            nodes.append(SpanAggregationNode(span_id=cols["span_id"], parent_id=cols["parent_span_id"],
                                             data=value if isinstance(value, dict) else None))
        total = aggregate(nodes) or {}
        out.update({column: v for k, column in by_key.items() if (v := convert(total.get(k))) is not None})
    return out


def _assessment_row(a: Any, trace_id: str, experiment_id: int, trace_ms: int, now: int, aggregate: Any) -> dict[str, Any]:
    """The `assessments` row of a Feedback, column for column as `SqlAssessments.from_mlflow_entity` fills it."""
    from mlflow.tracing.utils import generate_assessment_id

    value = a.feedback.value
    numeric, is_numeric = aggregate(value)
    return {"assessment_id": a.assessment_id or generate_assessment_id(), "trace_id": trace_id, "name": a.name,
            "assessment_type": "feedback", "value": json.dumps(value), "error": None,
            "created_timestamp": a.create_time_ms or now, "last_updated_timestamp": a.last_update_time_ms or now,
            "experiment_id": experiment_id, "trace_timestamp_ms": trace_ms, "aggregate_value": numeric,
            "is_numeric_value": is_numeric, "source_type": a.source.source_type, "source_id": a.source.source_id,
            "run_id": a.run_id, "span_id": a.span_id, "rationale": a.rationale, "overrides": a.overrides,
            "valid": True, "assessment_metadata": json.dumps(a.metadata) if a.metadata else None}


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """executemany needs one set of keys: a key some rows lack (an optional column) is None in those."""
    keys = {k for r in rows for k in r}
    return [r if len(r) == len(keys) else {k: r.get(k) for k in keys} for r in rows]


def _enqueue_rollups(session: Any, experiment_id: str, traces: Sequence[CaseTrace]) -> None:
    """The MLflow UI's overview charts read daily rollups; mark the days these traces fall on for rebuild."""
    try:
        from mlflow.store.tracking.utils.sql_trace_rollups import RollupFamily, enqueue_rollup_rebuild_partitions
    except ImportError:
        return
    times = sorted({t.info.request_time for t in traces})
    families = [f for f in (getattr(RollupFamily, n, None) for n in ("TRACE_METRIC", "ASSESSMENT", "SPAN_COST")) if f]
    enqueue_rollup_rebuild_partitions(session, [(f, int(experiment_id), times) for f in families])


def _attr(raw: Any) -> str | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        value = raw
    return str(value)[:500] if value is not None else None


def _cost(raw: Any) -> float | None:
    try:
        value = json.loads(raw).get("total_cost") if raw else None
    except (TypeError, ValueError, AttributeError):
        return None
    finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    return float(value) if finite else None
