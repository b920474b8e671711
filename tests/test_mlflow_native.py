"""The logged run as the MLflow UI reads it, read back through MlflowClient (real sqlite store, real sessions on
the OpenAI stub): a descriptive run name and the gate table as description, the eval set as the dataset input,
one trace per case with spans, attributes and assessments and no raw PII, the prompt in the Prompt Registry
linked to the run (once per id@version), and both trace writers (bulk SQL and MLflow's public API) giving the
same traces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Project
from pytest_genai.testing.openai_stub import OpenAIStub

KEY = "sk-native-5b4a32109f8e7d6c"
STUB_LATENCY_MS = 1  # the conftest `stub` answers after this
EMAIL = "desk7.lee@example.com"
CASES = [{"id": f"q{i}", "question": f"Who wrote note {i}? Mail {EMAIL}", "answers": [f"item{i} value"],
          "context": f"item{i} value is here"} for i in range(5)]


@pytest.fixture
def api_project(project: Project, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    project.use_stub(stub.base_url, CASES, temperature=0.0, max_retries=0)
    project.config["gates"] = {"error_rate": "== 0", "em": "<= 0.5"}  # the stub answers right: em fails
    project.write_config()
    return project


def client_for(project: Project) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=project.mlflow_uri, registry_uri=project.mlflow_uri)


def only_run(project: Project) -> Any:
    client = client_for(project)
    runs = client.search_runs([client.get_experiment_by_name("test-exp").experiment_id], order_by=["start_time DESC"])
    return runs[0]


def test_a_logged_run_has_name_description_dataset_traces_and_registered_prompt(api_project: Project) -> None:
    result = api_project.run("--genai-config", "genai.yaml")
    assert result.ret == 1  # the em gate fails: the description must show a failed gate too
    client = client_for(api_project)
    run = only_run(api_project)
    record = api_project.summary()

    assert run.info.run_name == "qa@1 · stub-model · qa"  # prompt · model · eval set (no git here)
    note = run.data.tags["mlflow.note.content"]
    assert "gates failed" in note and "| `em` | `<= 0.5` | 1 | ❌ FAIL" in note and "| `error_rate` | `== 0` | 0 | ✅ pass" in note

    (ds_input,) = run.inputs.dataset_inputs
    ds = ds_input.dataset
    assert ds.digest == record["provenance"]["eval_set_hash"][:36] and ds.name == "qa"
    assert json.loads(ds.source)["uri"].endswith("evals/qa.jsonl") and json.loads(ds.profile)["num_rows"] == 5
    assert {t.key: t.value for t in ds_input.tags}["mlflow.data.context"] == "eval"

    traces = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, max_results=100)
    assert len(traces) == 5 and run.data.tags["genai.traces"] == "5" and record["tracking"]["traces"] == 5
    by_case = {t.info.tags["genai.case_id"]: t for t in traces}
    assert set(by_case) == {c["id"] for c in CASES}
    results = {r["id"]: r for r in api_project.last_results()}
    for cid, trace in by_case.items():
        r = results[cid]
        spans = {s.name: s for s in trace.data.spans}
        assert set(spans) == {f"case {cid}", "render", "generate", "score"}  # no retrieval in this pipeline
        root = spans[f"case {cid}"]
        assert root.parent_id is None and all(s.parent_id == root.span_id for n, s in spans.items() if s is not root)
        gen = spans["generate"]
        assert gen.span_type == "LLM" and gen.get_attribute("mlflow.llm.model") == "stub-model"
        assert gen.get_attribute("mlflow.chat.tokenUsage")["input_tokens"] == r["input_tokens"] > 0
        assert gen.outputs == r["answer"] and spans["render"].outputs == r["prompt"]
        assert trace.info.token_usage["output_tokens"] == r["output_tokens"]
        assert root.start_time_ns <= gen.start_time_ns <= gen.end_time_ns <= spans["score"].start_time_ns <= root.end_time_ns
        feedback = {a.name: a.value for a in trace.info.assessments}
        assert feedback["em"] == r["em"] and feedback["f1"] == pytest.approx(r["f1"]) and feedback["pass"] is True
        assert "safety_flags" in feedback and EMAIL not in trace.to_json()
        assert "<EMAIL" in trace.to_json()  # the question as the record holds it: redacted, not dropped
    assert record["tracking"]["warnings"] == []

    # the UI's "Registered prompts" of a run is its mlflow.linkedPrompts tag
    assert json.loads(run.data.tags["mlflow.linkedPrompts"]) == [{"name": "qa", "version": "1"}]
    prompt = client.get_prompt_version("qa", 1)
    assert prompt.tags["prompt.hash"] == record["provenance"]["prompt_hash"] and prompt.tags["prompt.version"] == "1"
    assert "{{ question }}" in json.dumps(prompt.template) and run.data.tags["genai.prompt_uri"] == "prompts:/qa/1"
    assert record["tracking"]["prompt_uri"] == "prompts:/qa/1"
    # filed under the run's experiment (its Prompts tab), not MLflow's current one (Default)
    listed = client.search_prompts(filter_string=f'experiment_id = "{run.info.experiment_id}"')
    assert [p.name for p in listed] == ["qa"]


def test_the_prompt_is_registered_once_per_id_at_version(api_project: Project) -> None:
    assert api_project.run("--genai-config", "genai.yaml").ret == 1
    assert api_project.run("--genai-config", "genai.yaml").ret == 1
    client = client_for(api_project)
    assert [v.version for v in client.search_prompt_versions("qa")] == [1]
    api_project.write_prompt(version=2, template="Context: {{ context }}\\nQuestion: {{ question }}\\nAnswer briefly.")
    api_project.config["prompt"] = {"id": "qa", "version": 2}
    api_project.write_config()
    assert api_project.run("--genai-config", "genai.yaml").ret == 1
    versions = {v.version: v.tags["prompt.version"] for v in client.search_prompt_versions("qa")}
    assert versions == {1: "1", 2: "2"}
    assert only_run(api_project).data.tags["genai.prompt_uri"] == "prompts:/qa/2"
    # an unbumped edit is still stopped at session start, against the store's history
    api_project.write_prompt(version=2, template="Context: {{ context }}\\nQuestion: {{ question }}\\nEdited.")
    result = api_project.run("--genai-config", "genai.yaml", subprocess=True)
    assert result.ret == 4 and "qa@2" in result.stdout.str() + result.stderr.str()
    assert len(client.search_prompt_versions("qa")) == 2


def test_traces_can_be_turned_off(api_project: Project) -> None:
    api_project.write_config(tracking__traces=False)
    api_project.run("--genai-config", "genai.yaml")
    run = only_run(api_project)
    client = client_for(api_project)
    assert client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id) == []
    assert run.data.tags["genai.traces"] == "0" and run.inputs.dataset_inputs  # the dataset input stays


def _results(n: int) -> list[Any]:
    from pytest_genai.types import CaseResult

    return [CaseResult(
        id=f"c{i}", question=f"what is {i}?", answer="x" if i % 3 else None, answers=("x",), em=float(i % 2),
        f1=0.5, latency_ms=12.0 + i, input_tokens=50, output_tokens=3, cost_usd=0.0001, seed=i,
        error=None if i % 3 else "RuntimeError: boom", prompt="Q: what?",
        retrieved=({"chunk_id": f"d{i}#0", "doc_id": f"d{i}", "score": 0.8, "rank": 1, "used": True},
                   {"chunk_id": f"d{i}#1", "doc_id": f"d{i}", "score": 0.5, "rank": 2, "used": False}),
        safety_flags=("email",) if i == 4 else (), started_ms=1.7e12 + i, scores={"custom": 0.25},
        timings={"retrieval_ms": 2.0, "llm_ms": 9.0, "score_ms": 0.1}) for i in range(n)]


def _comparable(trace: Any) -> dict[str, Any]:
    spans = sorted(({"name": s.name, "type": s.span_type, "parent": s.parent_id, "inputs": s.inputs,
                     "outputs": s.outputs, "start": s.start_time_ns, "end": s.end_time_ns, "status": s.status.status_code,
                     "attrs": {k: v for k, v in s.attributes.items() if k != "mlflow.traceRequestId"}}
                    for s in trace.data.spans), key=lambda d: d["name"])
    info = trace.info
    root = next(s for s in trace.data.spans if s.parent_id is None)
    events = {e.name: e.attributes.get("exception.message") for e in root.events}
    return {"spans": spans, "state": info.state, "events": events, "preview": (info.request_preview, info.response_preview),
            "tags": {k: v for k, v in info.tags.items() if not k.startswith("mlflow.artifactLocation")},
            "assessments": sorted((a.name, json.dumps(a.value), a.rationale) for a in info.assessments),
            "tokens": info.token_usage, "duration": info.execution_duration, "time": info.request_time,
            "run": info.trace_metadata.get("mlflow.sourceRun")}


def test_the_bulk_writer_and_mlflows_public_api_write_the_same_traces(mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    from pytest_genai.tracking.mlflow_traces import TraceContext, build_traces, log_traces

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.create_experiment("writers")
    got = {}
    for bulk in (True, False):
        run = client.create_run(exp).info.run_id
        ctx = TraceContext(exp, run, model="m", provider="p", prompt="qa@1", config_hash="abc")
        assert log_traces(mlflow_uri, build_traces(_results(6), ctx, 1.7e12), bulk=bulk) == ("bulk" if bulk else "api")
        traces = client.search_traces(locations=[exp], run_id=run, max_results=50)
        assert len(traces) == 6
        got[bulk] = {t.info.tags["genai.case_id"]: {**_comparable(t), "run": _comparable(t)["run"] == run}
                     for t in traces}
    assert got[True] == got[False]
    c1 = got[True]["c1"]
    retrieve = next(s for s in c1["spans"] if s["name"] == "retrieve")
    assert retrieve["type"] == "RETRIEVER" and [d["id"] for d in retrieve["outputs"]] == ["d1#0", "d1#1"]
    assert retrieve["outputs"][0]["page_content"] == "#1 · d1 · chunk d1#0 · score 0.8000 · in the prompt"
    assert retrieve["attrs"]["genai.chunk_scores"] == [0.8, 0.5] and c1["run"] is True
    failed = got[True]["c0"]
    assert failed["state"] == "ERROR" and ("pass", "false", "RuntimeError: boom") in failed["assessments"]
    assert failed["events"] == {"exception": "boom"}  # the UI's exception view of the root span
    assert ("safety_flags", '["email"]', None) in got[True]["c4"]["assessments"]
    assert ("custom", "0.25", None) in c1["assessments"]


def test_span_data_is_mlflows_own_span_layout() -> None:
    """The spans are built as plain data (no OpenTelemetry objects): MLflow's `Span.from_dict` reads each back
    to the same dict, and the SQL columns beside the content are the entity's own id, parent, type and status."""
    from mlflow.entities import Span

    from pytest_genai.tracking.mlflow_traces import TraceContext, build_traces
    from pytest_genai.tracking.trace_sql import span_columns

    traces = build_traces(_results(3), TraceContext("1", "run1", model="m", prompt="qa@1"), 1.7e12)
    assert [len(t.spans) for t in traces] == [5, 5, 5]
    for data in (d for t in traces for d in t.spans):
        span = Span.from_dict(data)
        assert span.to_dict() == data
        assert span_columns(data) == {"span_id": span.span_id, "parent_span_id": span.parent_id,
                                      "type": span.span_type, "status": span.status.status_code}
    failed_root = traces[0].spans[0]
    assert Span.from_dict(failed_root).status.description == "RuntimeError: boom"
    assert [e.name for e in Span.from_dict(failed_root).events] == ["exception"]


def test_a_store_that_refuses_traces_keeps_the_run_and_says_why(api_project: Project,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A store error on traces is a warning on the record and a tag; params, metrics and artifacts are logged."""
    from pytest_genai.tracking import mlflow_traces

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("the trace table is full")

    monkeypatch.setattr(mlflow_traces, "log_traces", refuse)
    result = api_project.run("--genai-config", "genai.yaml")
    assert result.ret == 1  # the em gate only: a trace failure does not fail the session
    run = only_run(api_project)
    assert run.info.status == "FINISHED" and "f1" in run.data.metrics
    assert "traces not logged: RuntimeError: the trace table is full" in run.data.tags["genai.tracking_warnings"]
    assert api_project.summary()["tracking"]["warnings"] == ["traces not logged: RuntimeError: the trace table is full"]
    assert "traces not logged" in result.stdout.str()
    assert client_for(api_project).list_artifacts(run.info.run_id, "")
