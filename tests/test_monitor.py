"""Monitoring after deploy: a custom pipeline registered through a real eval, served by `mlflow models serve`
(real HTTP, real sqlite registry), 100 requests with planted PII and a secret; `pytest-genai monitor` reports
them under the eval's metric names, the sink holds no raw PII, a slower second version breaches its SLO. And
the aggregation, feedback join, window and SLO rules on fixed records."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import textwrap
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import ks_2samp

from pytest_genai.monitor import aggregate as agg
from pytest_genai.monitor.cli import add_parser, alert_line, check_slo, run
from pytest_genai.monitor.record import ModelIdentity, Recorder, read_local, sanitize_record
from pytest_genai.testing.example_project import write_env_lock

BIN = Path(sys.executable).parent
NAME = "monitored-qa"

# Answers like the eval's stub (first word of the context); without a context it echoes the question, so PII
# planted in a request comes back in the answer; llm.model_id "slow" sleeps 50 ms per call.
PIPELINE = '''
import time
from pytest_genai import Answer, Usage

def factory(config):
    slow = config.get("llm.model_id") == "slow"
    def pipeline(case):
        if slow:
            time.sleep(0.05)
        if case.question.startswith("fail"):
            raise RuntimeError("the model server said no")
        text = (case.context or "").split()[0] if case.context else "You said: " + case.question
        return Answer(text=text, usage=Usage(len(case.question.split()), len(text.split())))
    return pipeline
'''

EMAIL = "jane.doe@example.com"
PHONE = "(415) 555-0132"
SECRET = "sk-proj-Ab3dE5gH7jK9mN1pQ3rS5tU7vW9xY1z"


@pytest.fixture
def rel(project: Any) -> Any:
    project.pytester.makepyfile(genai_monitor_pipeline=PIPELINE)
    write_env_lock(project.path / "requirements.lock")
    project.config.update(pipeline="genai_monitor_pipeline:factory", env={"lock_file": "requirements.lock"},
                          registry={"model_name": NAME, "require_clean_git": False},
                          monitor={"sink": "local", "slo": {"latency_p95_ms": "<= 20", "error_rate": "<= 0.05"}})
    project.write_config()
    return project


def _monitor(*argv: str) -> tuple[int, list[str]]:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    lines: list[str] = []
    return run(parser.parse_args(["monitor", *argv]), echo=lines.append), lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`mlflow models serve --env-manager local` in its own process group, from a folder outside the project."""

    def __init__(self, uri: str, model: str, cwd: Path, sink: Path) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
        env.update(MLFLOW_TRACKING_URI=uri, HF_HUB_OFFLINE="1", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                   GENAI_MONITOR_PATH=str(sink), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
        self.log = cwd / f"serve-{self.port}.log"
        self.proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local",
                                      "-h", "127.0.0.1", "-p", str(self.port)], cwd=cwd, env=env,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2)
                return
            except OSError:
                assert time.monotonic() < deadline, self.log.read_text()[-3000:]
                time.sleep(0.3)

    def ask(self, rows: list[dict[str, str]]) -> list[dict[str, Any]]:
        body = json.dumps({"dataframe_records": rows}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"]

    def stop(self) -> None:
        """SIGTERM to the group, then wait until all of it is gone: the `mlflow` CLI dies at once, while its uvicorn
        still writes the records it was gathering (reading the store before that saw 9 of 10 requests)."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while True:
            self.proc.poll()  # the CLI, reaped once it is gone: from then on the group lives as long as its uvicorn
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                raise AssertionError(f"the server did not stop within 30 s of SIGTERM: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)


def _question(i: int) -> str:
    if i % 10 == 0:
        return f"please write to {EMAIL} about order {i}"
    if i % 10 == 1:
        return f"call me on {PHONE} about order {i}"
    if i % 25 == 2:
        return f"my key is {SECRET} for order {i}"
    return f"what is the status of order {i}"


@pytest.mark.slow  # `mlflow models serve`, 200 requests
def test_served_traffic_is_recorded_redacted_and_held_to_the_slo(rel: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    from mlflow.tracking import MlflowClient

    result = rel.run("--genai-config", "genai.yaml", "--genai-register")
    assert result.ret == 0, result.stdout.str()
    serve_dir = tmp_path_factory.mktemp("serve")
    sink = serve_dir / "requests.jsonl"
    server = Server(rel.mlflow_uri, f"models:/{NAME}@staging", serve_dir, sink)
    try:
        outputs = [server.ask([{"question": _question(i)}])[0] for i in range(100)]
    finally:
        server.stop()
    assert all(len(o["request_id"]) == 32 for o in outputs) and len({o["request_id"] for o in outputs}) == 100
    assert outputs[0]["answer"] == f"You said: {_question(0)}"  # the client gets the answer itself
    assert outputs[2]["answer"] == "I can't share that."  # safety.block: SECRET, as in the eval

    text = sink.read_text()
    assert EMAIL not in text and "555-0132" not in text and SECRET not in text and "sk-proj" not in text
    assert "<EMAIL:" in text and "<PHONE:" in text
    records = read_local(sink)
    assert len(records) == 100 and {r["request_id"] for r in records} == {o["request_id"] for o in outputs}
    assert {r["model_name"] for r in records} == {NAME} and {r["model_version"] for r in records} == {"1"}

    uri = rel.mlflow_uri
    labels = serve_dir / "labels.jsonl"
    labels.write_text("".join(json.dumps(x) + "\n" for x in [
        {"request_id": outputs[3]["request_id"], "answers": [f"You said: {_question(3)}"], "thumbs": "up"},
        {"request_id": outputs[4]["request_id"], "answers": ["something else entirely"], "thumbs": "down"},
        {"request_id": outputs[5]["request_id"], "thumbs": "up"},
        {"request_id": "0" * 32, "thumbs": "down"},
    ]))
    ret, lines = _monitor(NAME, "--alias", "staging", "--config", str(rel.path / "genai.yaml"), "--path", str(sink),
                          "--tracking-uri", uri, "--since", "1h", "--feedback", str(labels))
    out = "\n".join(lines)
    assert ret == 0, out
    metrics = _run_metrics(uri, lines)
    assert metrics["requests_total"] == 100
    assert metrics["pii_flag_rate"] == pytest.approx(0.24)  # 10 e-mails, 10 phones, 4 keys
    assert metrics["block_rate"] == pytest.approx(0.04) and metrics["safety_critical_count"] == 4
    assert metrics["error_rate"] == 0 and metrics["latency_p95_ms"] < 20
    assert metrics["cost_total_usd"] == pytest.approx(sum(r["cost_usd"] for r in records))
    assert metrics["labelled_total"] == 3 and metrics["em"] == 0.5 and metrics["feedback_positive_rate"] == pytest.approx(2 / 3)
    assert "1 unknown request id(s)" in out
    assert any(ln.startswith("requests_total") for ln in lines) and "latency_p95_ms" in out and "pass" in out

    # a second version whose pipeline sleeps 50 ms: staging moves to it, its traffic breaches latency_p95_ms <= 20;
    # it records with the default sink: MLflow traces, written in batches by the serving process
    rel.config["llm"]["model_id"] = "slow"
    del rel.config["monitor"]["sink"]
    rel.write_config()
    again = rel.run("--genai-config", "genai.yaml", "--genai-register")
    assert again.ret == 0, again.stdout.str()
    server = Server(uri, f"models:/{NAME}@staging", serve_dir, sink)
    try:
        for i in range(10):
            server.ask([{"question": f"write to {EMAIL} about order {i}" if i == 3 else f"what is the status of order {i}"}])
    finally:
        server.stop()  # SIGTERM: the batch still gathering is written at exit
    ret, lines = _monitor(NAME, "--alias", "staging", "--config", str(rel.path / "genai.yaml"),
                          "--tracking-uri", uri, "--last", "50")
    assert ret == 1, "\n".join(lines)
    assert "10 request(s)" in lines[0] and "mlflow sink" in lines[0], (lines[:3], server.log.read_text()[-4000:])
    model_id = lines[0].split("@staging, ")[1].split(")")[0]  # v2's LoggedModel, as the command resolved it
    traces = MlflowClient(tracking_uri=uri).search_traces(
        locations=[MlflowClient(tracking_uri=uri).get_experiment_by_name("test-exp").experiment_id],
        filter_string=f"tags.`genai.model_id` = '{model_id}'", max_results=100)
    assert len(traces) == 10 and not [t for t in traces if EMAIL in t.to_json()]
    assert MlflowClient(tracking_uri=uri).get_logged_model(model_id).experiment_id == traces[0].info.experiment_id
    assert sum("<EMAIL:" in t.to_json() for t in traces) == 1 and sink.read_text().count("\n") == 100  # v2 wrote no line
    alerts = [ln for ln in lines if ln.startswith("ALERT")]
    assert len(alerts) == 1 and f"ALERT {NAME} v2@staging: SLO breached: latency_p95_ms=" in alerts[0]
    assert "(slo <= 20)" in alerts[0] and "error_rate" not in alerts[0]

    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("test-exp").experiment_id],
        filter_string="tags.`genai.kind` = 'monitor'")
    assert {(r.data.tags["genai.model_version"], r.data.tags["genai.slo_passed"]) for r in runs} == {("1", "true"), ("2", "false")}
    assert all(r.data.tags["genai.model_id"].startswith("m-") for r in runs)


def _run_metrics(uri: str, lines: list[str]) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    run_id = next(ln for ln in lines if ln.startswith("mlflow run: ")).split()[2]
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.tags["genai.kind"] == "monitor"
    return run.data.metrics


def test_bad_input_is_one_line_and_exit_2(rel: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rel.run("--genai-config", "genai.yaml", "--genai-register").ret == 0
    base = ["--config", str(rel.path / "genai.yaml"), "--tracking-uri", rel.mlflow_uri]
    for argv, message in [
        ((NAME + "x", *base), f"did you mean '{NAME}'"),
        ((NAME, "--alias", "production", *base), "has no alias 'production'"),
        ((NAME, "--alias", "staging", "--path", str(tmp_path / "none.jsonl"), *base), "none.jsonl does not exist"),
        ((NAME, "--alias", "staging", "--since", "yesterday", "--path", str(tmp_path / "none.jsonl"), *base),
         "neither a duration"),
    ]:
        ret, _ = _monitor(*argv)
        assert ret == 2 and message in capsys.readouterr().err, argv
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    ret, lines = _monitor(NAME, "--alias", "staging", "--path", str(empty), "--no-log", *base)
    assert ret == 0
    assert "no traffic in the window: SLO gates on rates and latencies are skipped, not passed" in lines
    assert any("latency_p95_ms" in ln and "skipped (no traffic in the window)" in ln for ln in lines)


# --------------------------------------------------------------------------- fixed records

def _rec(i: int, **kw: Any) -> dict[str, Any]:
    base = {"request_id": f"r{i}", "ts": 1000.0 + i, "model_id": "m-a", "question": "q", "answer": "Paris",
            "latency_ms": float(i + 1), "input_tokens": 10, "output_tokens": 2, "cost_usd": 0.01, "safety_flags": [],
            "toxicity": None, "blocked": False, "critical": False, "retrieval_top_score": None, "error": None}
    base.update(kw)
    return base


def test_aggregation_uses_the_eval_definitions() -> None:
    records = [_rec(i) for i in range(10)] + [_rec(10, error="boom", latency_ms=999.0),
                                               _rec(11, safety_flags=["EMAIL"], blocked=False),
                                               _rec(12, safety_flags=["SECRET"], blocked=True, critical=True)]
    m = agg.traffic_metrics(records)
    assert m["requests_total"] == 13 and m["tokens_input_total"] == 130 and m["tokens_output_total"] == 26
    assert m["error_rate"] == pytest.approx(1 / 13)
    assert m["latency_p50_ms"] == 6.5  # errored requests are left out of latency, as errored cases in the eval
    assert m["pii_flag_rate"] == pytest.approx(2 / 13) and m["block_rate"] == pytest.approx(1 / 13)
    assert m["safety_critical_count"] == 1 and m["cost_per_question_usd"] == pytest.approx(0.01)
    assert "toxicity_flag_rate" not in m  # no classifier: absent, not a reassuring 0
    assert agg.traffic_metrics([]) == {"requests_total": 0.0, "tokens_input_total": 0.0, "tokens_output_total": 0.0,
                                       "cost_total_usd": 0.0, "safety_critical_count": 0.0}


def test_window_and_model_selection() -> None:
    records = [_rec(i) for i in range(5)] + [_rec(9, model_id="m-other")]
    mine, others = agg.select(records, agg.Window(start=1001.0, end=1003.0), "m-a")
    assert [r["request_id"] for r in mine] == ["r1", "r2", "r3"] and others == 1
    assert [r["request_id"] for r in agg.select(records, agg.Window(last=2), "m-a")[0]] == ["r3", "r4"]
    assert agg.parse_time("1h", 10_000.0) == 10_000.0 - 3600
    assert agg.parse_time("2026-11-02T10:00:00Z", 0) == agg.parse_time("2026-11-02T10:00:00+00:00", 0)
    with pytest.raises(ValueError, match="neither a duration"):
        agg.parse_time("soon", 0)


def test_feedback_joins_on_request_ids(tmp_path: Path) -> None:
    records = [_rec(0, answer="Paris"), _rec(1, answer="Rome"), _rec(2, answer=None, error="x")]
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        {"request_id": "r0", "answers": ["paris"], "thumbs": "up"},
        {"request_id": "r1", "answers": ["Milan"]},
        {"request_id": "r2", "answers": ["Oslo"], "thumbs": "down"},
        {"request_id": "nope", "thumbs": "up"},
    ]) + "\n")
    fb = agg.feedback_metrics(records, agg.read_feedback(path))
    assert fb.metrics == {"labelled_total": 3.0, "em": pytest.approx(1 / 3), "f1": pytest.approx(1 / 3),
                          "feedback_positive_rate": 0.5}
    assert fb.unknown_ids == ("nope",) and fb.labels == 4
    path.write_text('{"request_id": "r0", "thumbs": "meh"}\n')
    with pytest.raises(agg.FeedbackError, match=r"labels.jsonl:1: thumbs must be"):
        agg.read_feedback(path)


def test_drift_against_the_eval_runs_scores() -> None:
    eval_results = [{"retrieved": [{"doc_id": "d", "score": s}, {"doc_id": "e", "score": s - 0.1}], "answer": "a b",
                     "output_tokens": 2} for s in [0.5 + i / 100 for i in range(20)]]
    live = [_rec(i, retrieval_top_score=0.3 if i < 3 else 0.6) for i in range(10)]
    d = agg.drift(live, eval_results)
    words_live = [len(str(r["answer"]).split()) for r in live]
    assert d.metrics == {"retrieval_low_score_rate": pytest.approx(0.3),
                         "answer_words_drift_ks": pytest.approx(ks_2samp(words_live, [2] * 20).statistic),
                         "output_tokens_drift_ks": pytest.approx(ks_2samp([r["output_tokens"] for r in live],
                                                                          [2] * 20).statistic)}
    assert any(ln.startswith("answer words (traffic/eval): p5 1/2") for ln in d.lines)
    # gateable like any metric: monitor.slo answer_words_drift_ks
    (gate,) = check_slo({"answer_words_drift_ks": "<= 0.2"}, d.metrics, traffic=True)
    assert gate.passed is (d.metrics["answer_words_drift_ks"] <= 0.2) and not gate.skipped


@pytest.mark.parametrize("seed", range(5))
def test_the_ks_statistic_is_scipys(seed: int) -> None:
    import random

    from pytest_genai.stats import ks_statistic

    rng = random.Random(seed)
    a = [rng.choice(range(12)) for _ in range(rng.randint(1, 60))]  # ties, as answer lengths have
    b = [rng.choice(range(4, 20)) for _ in range(rng.randint(1, 60))]
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    assert ks_statistic(a, a) == 0 and ks_statistic([1.0], [2.0]) == 1


def test_slo_rules() -> None:
    gates = check_slo({"latency_p95_ms": "<= 20", "requests_total": ">= 1"}, {"requests_total": 0.0}, traffic=False)
    assert [(g.metric, g.skipped, g.passed) for g in gates] == [("latency_p95_ms", True, False), ("requests_total", False, False)]
    assert alert_line("m", "3", "production", gates) == "ALERT m v3@production: SLO breached: requests_total=0 (slo >= 1)"
    from pytest_genai.monitor.cli import MonitorError

    with pytest.raises(MonitorError, match="did you mean 'monitor.slo.latency_p95_ms'"):
        check_slo({"latency_p95": "<= 20"}, {}, traffic=True)


def test_records_are_sanitized_and_a_broken_sink_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pytest_genai.sanitize import Sanitizer

    san = Sanitizer(redact_pii=True, key=None, secrets=("hunter2-secret-value",))
    rec = sanitize_record(_rec(0, request_id="4155550132abcdef", question=f"mail {EMAIL}",
                               answer="the password is hunter2-secret-value"), san)
    assert rec["request_id"] == "4155550132abcdef" and EMAIL not in rec["question"] and "hunter2" not in rec["answer"]

    class Broken:
        name = "broken"

        def write(self, records: Any) -> None:
            raise OSError("disk full")

    recorder = Recorder(Broken(), san)
    with caplog.at_level("WARNING", logger="pytest_genai.monitor"):
        recorder.emit([_rec(0)])
        recorder.emit([_rec(1), _rec(2)])
    assert recorder.failures == 3
    assert [r.getMessage() for r in caplog.records if "sink failed" in r.getMessage()] == [
        "pytest-genai monitor: the broken sink failed, request records are being dropped: disk full"]


def test_the_mlflow_sink_writes_traces_tagged_with_the_model_id(mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from pytest_genai.monitor.record import MlflowTraceSink, ModelIdentity, read_traces
    from pytest_genai.sanitize import Sanitizer

    from pytest_genai.tracking.mlflow_client import use_tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    with use_tracking_uri(mlflow_uri):  # puts MLflow's process-wide URI (and the env) back as they were
        exp = mlflow.create_experiment("monitor-traces")
        sink = MlflowTraceSink(ModelIdentity("m-x"), experiment_id=exp)
        recorder = Recorder(sink, Sanitizer(redact_pii=True, key=None, secrets=()))
        recorder.emit([_rec(i, model_id="m-x", question=f"mail {EMAIL}", ts=time.time()) for i in range(3)])
        sink.flush()
        records = read_traces([exp], "m-x")
    assert sorted(r["request_id"] for r in records) == ["r0", "r1", "r2"] and recorder.failures == 0
    assert all(EMAIL not in json.dumps(r) for r in records)
    assert read_traces([exp], "m-other") == []


def _served(tmp: Path, pipeline: Any) -> Any:
    """A ServedPipeline over `pipeline` as the packaged model builds it (bundle config, guard, sanitizer, a local
    sink), without serving it over HTTP."""
    import yaml

    from pytest_genai.config import load_config
    from pytest_genai.context import PipelineContext
    from pytest_genai.monitor.record import LocalSink
    from pytest_genai.release.bundle import BUNDLE_FORMAT, BundleInfo
    from pytest_genai.release.served import ServedPipeline
    from pytest_genai.runtime import Runtime
    from pytest_genai.safety.guard import Guard
    from pytest_genai.sanitize import Sanitizer

    (tmp / "e.jsonl").write_text('{"id": "a", "question": "q", "answers": ["x"]}\n')
    (tmp / "genai.yaml").write_text(yaml.safe_dump({"version": 1, "pipeline": "t:factory", "eval": {"set": "e.jsonl"},
                                                    "llm": {"model_id": "stub"}}))
    config = load_config(tmp / "genai.yaml")
    san = Sanitizer.from_config(config)
    info = BundleInfo(BUNDLE_FORMAT, "t", "t:factory", None, "c", "e", None, None, None, {}, None, "x", False)
    identity = ModelIdentity("m-t", "run", "t-model", "1")
    return ServedPipeline(info, config, PipelineContext(config, None, Runtime(), san), pipeline,
                          Guard.from_config(config), san, identity, Recorder(LocalSink(tmp / "requests.jsonl"), san))


def test_a_failing_row_gets_its_error_and_the_other_rows_are_answered(tmp_path: Path) -> None:
    from pytest_genai.types import Answer

    def pipeline(case: Any) -> Any:
        if case.question.startswith("fail"):
            raise RuntimeError(f"the model server said no to {EMAIL}")
        return Answer(text="You said: " + case.question)

    served = _served(tmp_path, pipeline)
    out = served.predict([{"question": "hello"}, {"question": "fail me"}, {"question": "again"}])
    assert [o["answer"] for o in out] == ["You said: hello", None, "You said: again"]
    assert [o["error"] for o in out] == [None, "RuntimeError: the model server said no to <EMAIL:" +
                                         out[1]["error"].split("<EMAIL:")[1], None]
    assert EMAIL not in json.dumps(out) and len({o["request_id"] for o in out}) == 3
    records = read_local(tmp_path / "requests.jsonl")
    assert [bool(r["error"]) for r in records] == [False, True, False]
    assert [r["request_id"] for r in records] == [o["request_id"] for o in out]
    # every row failing: the request fails (a broken model stays loud), its rows recorded all the same
    with pytest.raises(RuntimeError, match="said no"):
        served.predict([{"question": "fail once"}, {"question": "fail twice"}])
    assert len(read_local(tmp_path / "requests.jsonl")) == 5


def test_a_trace_batch_that_cannot_be_written_is_retried_then_reported_at_exit(tmp_path: Path) -> None:
    """A tracking server that is down: each batch is tried three times, then counted; the serving process says on
    stderr, as it exits, how many request records were not written (a loss is never silent)."""
    code = textwrap.dedent("""
        import time
        from pytest_genai.monitor.record import MlflowTraceSink, ModelIdentity
        t0 = time.monotonic()
        sink = MlflowTraceSink(ModelIdentity("m-x"), experiment_id="1")
        sink.write([{"request_id": "r0", "ts": 0.0}, {"request_id": "r1", "ts": 0.0}])
        sink.flush(60)
        print("failed", sink.failed, "written", sink.written, "took", round(time.monotonic() - t0, 2))
        sink.write([{"request_id": "r2", "ts": 0.0}])
    """)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    failed, took = out.stdout.split()[1], float(out.stdout.split()[-1])
    assert failed == "2" and took >= 1.2, out.stdout  # two records, after the 0.2 s and 1 s pauses
    assert ("pytest-genai monitor: 0 request record(s) written as traces; not written: 3 failed, 0 dropped (queue full), "
            "0 batch(es) still queued") in out.stderr, out.stderr[-3000:]
    assert out.stderr.count("request record(s) written as traces") == 1
