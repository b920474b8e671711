"""Case traces through the shared server (scripts/server.py: PostgreSQL + `mlflow server --app-name genai-basic-auth`):
a run's traces go to the batch endpoint a few hundred per request and read back, trace for trace, exactly as
MLflow's per-trace calls leave them; a user allowed to write the experiment batches, a read-only one writes
nothing either way; a server without the endpoint gets the per-trace calls; a bad batch is refused whole. The
SQL writer the endpoint uses reads back the same on a local sqlite store too."""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any, Iterator

import pytest
import requests

from server_fixture import MlflowServer

pytest_plugins = ["server_fixture"]
server = pytest.mark.slow  # a PostgreSQL cluster + MLflow server per worker


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch, mlflow_server: MlflowServer) -> Iterator[Any]:
    """`as_user(name)`: MLflow's env credentials for this test (MLflow reads them per request); the admin's by default."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")

    def use(user: str | None = None) -> Any:
        from mlflow.tracking import MlflowClient

        for k, v in mlflow_server.env(user).items():
            monkeypatch.setenv(k, v)
        return MlflowClient(tracking_uri=mlflow_server.uri)

    yield use


def _results(n: int) -> list[Any]:
    from pytest_genai.types import CaseResult

    return [CaseResult(
        id=f"c{i}", question=f"¿qué es {i}? — naïve “quotes”", answer="x" if i % 3 else None, answers=("x",),
        em=float(i % 2), f1=0.5, latency_ms=12.0 + i, input_tokens=50, output_tokens=3, cost_usd=0.0001, seed=i,
        error=None if i % 3 else "RuntimeError: boom", prompt="Q: what?",
        retrieved=({"chunk_id": f"d{i}#0", "doc_id": f"d{i}", "score": 0.8, "rank": 1, "used": True},
                   {"chunk_id": f"d{i}#1", "doc_id": f"d{i}", "score": 0.5, "rank": 2, "used": False}),
        safety_flags=("email",) if i == 4 else (), started_ms=1.7e12 + i, scores={"custom": 0.25},
        timings={"retrieval_ms": 2.0, "llm_ms": 9.0, "score_ms": 0.1}) for i in range(n)]


def _traces(client: Any, exp: str, n: int) -> tuple[str, list[Any]]:
    from pytest_genai.tracking.mlflow_traces import TraceContext, build_traces

    run = client.create_run(exp).info.run_id
    return run, build_traces(_results(n), TraceContext(exp, run, model="m", provider="p", prompt="qa@1",
                                                       config_hash="abc"), 1.7e12)


def _read_back(client: Any, exp: str, run: str) -> dict[str, Any]:
    """Every trace of the run as MLflow's public API returns it (info with tags, metadata and assessments, and
    every span), with what differs by run alone written as placeholders: the run id, the trace ids, the
    assessment ids and their creation times."""
    from pytest_genai.tracking.mlflow_traces import trace_id_for

    out = {}
    for t in client.search_traces(locations=[exp], run_id=run, max_results=100):
        case = t.info.tags["genai.case_id"]
        full = client.get_trace(t.info.trace_id)  # the spans as the UI's trace view reads them
        text = json.dumps({"info": full.info.to_dict(), "spans": [s.to_dict() for s in full.data.spans]}, sort_keys=True)
        tid = trace_id_for(run, case)
        otel = base64.b64encode(bytes.fromhex(tid[3:])).decode()
        for value, name in ((tid, "<trace>"), (tid[3:], "<hex>"), (otel, "<otel>"), (run, "<run>")):
            text = text.replace(value, name)
        data = json.loads(text)
        for a in data["info"].get("assessments", []):
            assert a.pop("assessment_id") and a.pop("create_time") and a.pop("last_update_time")
        out[case] = data
    return out


@server
def test_traces_go_in_batches_and_read_back_as_the_per_trace_calls_leave_them(mlflow_server: MlflowServer,
                                                                                as_user: Any) -> None:
    from pytest_genai.tracking.mlflow_traces import log_traces

    client = as_user()
    exp = client.create_experiment(f"traces-{uuid.uuid4().hex[:8]}")
    batched_run, batched = _traces(client, exp, 9)
    api_run, one_by_one = _traces(client, exp, 9)
    assert log_traces(mlflow_server.uri, batched) == "batch"
    assert log_traces(mlflow_server.uri, one_by_one, batch=False) == "api"
    got, want = _read_back(client, exp, batched_run), _read_back(client, exp, api_run)
    assert sorted(got) == [f"c{i}" for i in range(9)]
    assert got == want
    c0 = got["c0"]  # what the UI shows of a failed case: its state, tags, the pass assessment's rationale
    assert c0["info"]["state"] == "ERROR" and c0["info"]["tags"]["genai.passed"] == "false"
    assert c0["info"]["trace_metadata"]["mlflow.sourceRun"] == "<run>"
    assert {a["assessment_name"]: a.get("rationale") for a in c0["info"]["assessments"]}["pass"] == "RuntimeError: boom"
    assert sorted(s["name"] for s in c0["spans"]) == ["case c0", "generate", "render", "retrieve", "score"]
    assert "¿qué es 0? — naïve “quotes”" in c0["info"]["request_preview"]


def test_the_sql_writer_on_sqlite_reads_back_as_the_per_trace_calls_leave_it(mlflow_uri: str) -> None:
    """What `write_sql` writes in-process for a local store, as complete as the per-trace calls (the trace's cost,
    summed from its spans, included)."""
    from mlflow.tracking import MlflowClient

    from pytest_genai.tracking.mlflow_traces import log_traces

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.create_experiment("sqlite-traces")
    bulk_run, bulk = _traces(client, exp, 6)
    api_run, one_by_one = _traces(client, exp, 6)
    assert log_traces(mlflow_uri, bulk) == "bulk"
    assert log_traces(mlflow_uri, one_by_one, bulk=False) == "api"
    got = _read_back(client, exp, bulk_run)
    assert got == _read_back(client, exp, api_run) and len(got) == 6
    assert json.loads(got["c1"]["info"]["trace_metadata"]["mlflow.trace.cost"])["total_cost"] == pytest.approx(0.0001)


def test_the_batches_are_split_by_count_and_size_and_decode_to_the_same_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_genai.tracking import trace_batch
    from pytest_genai.tracking.mlflow_traces import TraceContext, build_traces

    traces = build_traces(_results(450), TraceContext("7", "r" * 32, model="m"), 1.7e12)
    bodies = trace_batch.batches(traces)
    decoded = [t for body in bodies for t in trace_batch.decode(json.loads(body))]
    assert [len(json.loads(b)["traces"]) for b in bodies] == [200, 200, 50]
    assert [(t.info.to_dict(), t.spans) for t in decoded] == [(t.info.to_dict(), t.spans) for t in traces]
    limit = len(bodies[0]) // 3
    monkeypatch.setattr(trace_batch, "BATCH_BYTES", limit)  # large cases: fewer a request
    small = trace_batch.batches(traces[:200])
    assert len(small) >= 3 and sum(len(json.loads(b)["traces"]) for b in small) == 200
    assert all(len(b) <= limit + 40 for b in small)  # + the experiment id around the traces


def test_a_batch_is_checked_before_anything_is_written() -> None:
    from pytest_genai.tracking import trace_batch
    from pytest_genai.tracking.mlflow_traces import TraceContext, build_traces

    body = json.loads(trace_batch.batches(build_traces(_results(2), TraceContext("7", "r" * 32), 1.7e12))[0])
    for change, message in ((lambda b: b.update(experiment_id="1 OR 1=1"), "experiment_id (digits)"),
                            (lambda b: b["traces"][0].update(trace_id="tr-../x"), "traces[0].trace_id"),
                            (lambda b: b["traces"].append(b["traces"][0]), "twice in one batch"),
                            (lambda b: b["traces"][1]["spans"].pop(0), "traces[1].spans: expected one root span"),
                            (lambda b: b["traces"][0]["spans"][1].update(evil=1), "traces[0].spans[1]: not a span of"),
                            (lambda b: b["traces"][1]["tags"].update(x=1), "traces[1].tags: expected an object of strings"),
                            (lambda b: b["traces"][0].update(state="RUNNING"), "traces[0].state")):
        bad = json.loads(json.dumps(body))
        change(bad)
        with pytest.raises(ValueError, match=re.escape(message)):
            trace_batch.decode(bad)


@server
def test_a_reader_writes_no_traces_batched_or_not_and_an_editor_batches(mlflow_server: MlflowServer,
                                                                        as_user: Any) -> None:
    from mlflow.exceptions import MlflowException

    from pytest_genai.tracking.mlflow_traces import log_traces

    admin = as_user()
    exp = admin.create_experiment(f"traces-perm-{uuid.uuid4().hex[:8]}")
    run, traces = _traces(admin, exp, 3)
    reader, editor = f"reader-{uuid.uuid4().hex[:6]}", f"editor-{uuid.uuid4().hex[:6]}"
    for user in (reader, editor):
        mlflow_server.create_user(user, uuid.uuid4().hex + "Aa1!")
    mlflow_server.grant_experiment(reader, exp, "READ")
    mlflow_server.grant_experiment(editor, exp, "EDIT")

    as_user(reader)
    with pytest.raises(MlflowException, match="403|PERMISSION_DENIED|[Pp]ermission denied"):
        log_traces(mlflow_server.uri, traces)  # the batch refused (403), then the per-trace calls refused too
    assert admin.search_traces(locations=[exp], run_id=run) == []
    reply = requests.post(mlflow_server.uri + _batch_path(), data=_body(traces), timeout=30,
                          auth=(reader, mlflow_server.users[reader]), headers={"Content-Type": "application/json"})
    assert reply.status_code == 403

    as_user(editor)
    assert log_traces(mlflow_server.uri, traces) == "batch"
    assert len(admin.search_traces(locations=[exp], run_id=run)) == 3


@server
def test_a_server_without_the_endpoint_gets_the_per_trace_calls(mlflow_server: MlflowServer, as_user: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_genai.tracking import trace_batch
    from pytest_genai.tracking.mlflow_traces import log_traces

    client = as_user()
    exp = client.create_experiment(f"traces-stock-{uuid.uuid4().hex[:8]}")
    run, traces = _traces(client, exp, 3)
    monkeypatch.setattr(trace_batch, "BATCH_PATH", "/api/3.0/pytest-genai/no-such-endpoint")  # what a stock server has
    assert log_traces(mlflow_server.uri, traces) == "api"
    assert len(client.search_traces(locations=[exp], run_id=run)) == 3


@server
def test_a_bad_or_repeated_batch_is_refused_whole(mlflow_server: MlflowServer, as_user: Any) -> None:
    from mlflow.exceptions import MlflowException

    from pytest_genai.tracking.mlflow_traces import log_traces

    client = as_user()
    exp = client.create_experiment(f"traces-bad-{uuid.uuid4().hex[:8]}")
    run, traces = _traces(client, exp, 3)
    _, others = _traces(client, exp, 3)
    body = json.loads(_body(traces))
    body["traces"][1]["spans"] = json.loads(_body(others))["traces"][1]["spans"]  # spans of another trace
    creds = (mlflow_server.admin_user, mlflow_server.admin_password)
    reply = requests.post(mlflow_server.uri + _batch_path(), json=body, auth=creds, timeout=30)
    assert reply.status_code == 400 and "traces[1].spans[0]: not a span of" in reply.json()["message"]
    assert requests.post(mlflow_server.uri + _batch_path(), data=_body(traces), timeout=30,
                         headers={"Content-Type": "application/json"}).status_code == 401
    assert client.search_traces(locations=[exp], run_id=run) == []  # nothing of the refused batch

    assert log_traces(mlflow_server.uri, traces) == "batch"
    with pytest.raises(MlflowException, match="trace_info_pk|already exists|UNIQUE|unique"):
        log_traces(mlflow_server.uri, traces)  # logged again: refused, never duplicated
    assert len(client.search_traces(locations=[exp], run_id=run)) == 3


def _batch_path() -> str:
    from pytest_genai.tracking.trace_batch import BATCH_PATH

    return BATCH_PATH


def _body(traces: list[Any]) -> bytes:
    from pytest_genai.tracking.trace_batch import batches

    [body] = batches(traces)
    return body
