"""The plugin end to end with pytester: items, gates, partial runs, failures, tracking, seeding."""

from __future__ import annotations

import json
import re
import threading
import time
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import CASES, Project


def run_of(project: Project) -> object:
    client = MlflowClient(tracking_uri=project.mlflow_uri)
    exp = client.get_experiment_by_name("test-exp")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, f"expected exactly one run, got {len(runs)}"
    return runs[0]


def test_cases_are_items_alongside_ordinary_tests(project: Project) -> None:
    project.write_config()
    project.pytester.makepyfile(test_ordinary="def test_plain():\n    assert 1 + 1 == 2\n")
    result = project.run("--genai-config", "genai.yaml", "--collect-only", "-q")
    assert result.ret == 0
    assert project.run_dirs() == []  # collecting is not an eval run: nothing written, nothing logged
    out = result.stdout.str()
    for c in CASES:
        assert f"evals/qa.jsonl::{c['id']}" in out
    assert "test_ordinary.py::test_plain" in out


def test_full_run_logs_one_mlflow_run_and_passes_gates(project: Project) -> None:
    project.write_config()
    result = project.run("--genai-config", "genai.yaml")
    result.assert_outcomes(passed=4)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*pytest-genai*", "f1*1*>= 0.5*pass*", "mlflow run: *", "gates passed: 1 of 1"])
    run = run_of(project)
    m, p, t = run.data.metrics, run.data.params, run.data.tags
    assert m["em"] == 1.0 and m["f1"] == 1.0 and m["cases_total"] == 4 and m["error_rate"] == 0.0
    # tokens: question words in, answer words out; cost from llm.pricing (USD per 1k)
    assert m["tokens_input_total"] == sum(len(c["question"].split()) for c in CASES)
    assert m["cost_total_usd"] == pytest.approx(m["tokens_input_total"] / 1000 * 1.0 + m["tokens_output_total"] / 1000 * 2.0)
    assert {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "cost_per_question_usd", "tokens_output_total"} <= set(m)
    assert "env_drift" not in m  # no lock file in this project: not computed, and not worth a line without a gate
    assert "env_drift is not computed" not in result.stdout.str()
    assert p["seed"] == "7" and p["llm.pricing.input_per_1k_tokens"] == "1.0" and p["gates.f1"] == ">= 0.5"
    assert t["genai.partial"] == "false" and t["genai.gates_passed"] == "true" and t["genai.seed"] == "7"
    assert len(t["config_hash"]) == 64 and len(t["eval_set.hash"]) == 64
    for tag in ("git_commit", "git_dirty", "git_branch", "env.lock_hash", "env.python", "env.platform"):
        assert tag in t
    client = MlflowClient(tracking_uri=project.mlflow_uri)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.resolved.yaml", "results.jsonl", "renders.jsonl", "gates.json", "run.json", "eval_set", "env"} <= names
    results = [json.loads(x) for x in Path(client.download_artifacts(run.info.run_id, "results.jsonl")).read_text().splitlines()]
    assert [r["id"] for r in results] == [c["id"] for c in CASES]
    assert set(results[0]) >= {"id", "question", "answer", "answers", "em", "f1", "latency_ms", "input_tokens", "output_tokens", "cost_usd", "seed", "error"}
    snapshot = Path(client.download_artifacts(run.info.run_id, "eval_set/qa.jsonl")).read_bytes()
    assert snapshot == (project.path / "evals" / "qa.jsonl").read_bytes()


def test_failed_gate_fails_session_even_when_items_pass(project: Project) -> None:
    project.write_config(gates={"f1": ">= 0.5", "cost_total_usd": "<= 0.00001"})
    result = project.run("--genai-config", "genai.yaml")
    result.assert_outcomes(passed=4)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*GATES FAILED: cost_total_usd=* (gate <= 0.00001)*"])
    assert run_of(project).data.tags["genai.gates_passed"] == "false"


def test_partial_run_does_not_enforce_gates_unless_asked(project: Project) -> None:
    project.write_config(gates={"f1": ">= 0.99", "cost_total_usd": "<= 0"})
    result = project.run("--genai-config", "genai.yaml", "-k", "paris")
    result.assert_outcomes(passed=1, deselected=3)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["cost_total_usd*<= 0*fail (not enforced)*", "*partial run: 1 of 4 cases; gates NOT enforced*"])
    assert run_of(project).data.tags["genai.partial"] == "true"
    enforced = project.run("--genai-config", "genai.yaml", "-k", "paris", "--genai-enforce-gates")
    assert enforced.ret == 1
    enforced.stdout.fnmatch_lines(["*GATES FAILED: cost_total_usd*"])


def test_single_node_id_selection(project: Project) -> None:
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", "evals/qa.jsonl::rome")
    result.assert_outcomes(passed=1)
    assert [r["id"] for r in project.last_results()] == ["rome"]


def test_failing_case_report_and_last_failed(project: Project) -> None:
    cases = CASES + [
        {"id": "boom_case", "question": "Explode?", "answers": ["no"]},
        {"id": "wrong", "question": "Capital of Spain?", "answers": ["Madrid"], "context": "Barcelona is big.", "expect": {"contains": "Madrid"}},
    ]
    project.write_cases(cases)
    project.write_config(gates={})
    result = project.run("--genai-config", "genai.yaml")
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines([
        "*case boom_case*", "*pipeline raised:*", "*RuntimeError: the model server said no*",
        "*FAILED: expected the answer to contain 'Madrid'*", "*question: Capital of Spain?*",
        "*answer:   'Barcelona'*", "*gold:     ?'Madrid'?*", "*em=0 f1=0.000*",
    ])
    result.stdout.fnmatch_lines(["FAILED evals/qa.jsonl::boom_case - RuntimeError: the model server said no",
                                 "FAILED evals/qa.jsonl::wrong - expected the answer to contain 'Madrid'"])
    assert project.summary()["metrics"]["error_rate"] == pytest.approx(1 / 6)
    assert result.ret == 1
    # the terminal shows where it raised; the record keeps the headline (type and message), not a traceback
    result.stdout.fnmatch_lines(["*Traceback (most recent call last):*", "*genai_user_pipeline.py*line*in pipeline*"])
    boom = next(r for r in project.last_results() if r["id"] == "boom_case")
    assert boom["error"] == "RuntimeError: the model server said no"
    again = project.run("--genai-config", "genai.yaml", "--lf")
    outcomes = again.parseoutcomes()
    assert outcomes["failed"] == 2 and "passed" not in outcomes
    assert {r["id"] for r in project.last_results()} == {"boom_case", "wrong"}


def test_a_missing_lock_is_said_when_a_gate_needs_it(project: Project) -> None:
    project.write_config(gates={"env_drift": "== 0"})
    result = project.run("--genai-config", "genai.yaml")
    result.stdout.fnmatch_lines(["*env: lock file *not found: env_drift is not computed (a gate on it fails)*"])
    assert result.ret == 1


def test_junitxml_has_per_case_metrics(project: Project) -> None:
    project.write_config()
    project.run("--genai-config", "genai.yaml", "--junitxml=out.xml")
    xml = (project.path / "out.xml").read_text()
    assert '<property name="f1" value="1.0"' in xml and '<property name="latency_ms"' in xml and '<property name="seed"' in xml


def test_config_error_is_a_usage_error_naming_file_and_line(project: Project) -> None:
    cfg = project.write_config()
    cfg.write_text(cfg.read_text() + "topK: 3\n")
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "genai.yaml:" in result.stderr.str() and "did you mean 'rag.retriever_k'?" in result.stderr.str()


def test_eval_set_pin_catches_a_changed_file(project: Project) -> None:
    project.write_config(eval__sha256="0" * 64)
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "eval.sha256: the eval set" in result.stderr.str() and "changed" in result.stderr.str()


def test_repeat_reports_determinism(project: Project) -> None:
    project.write_config(llm__model_id="random")  # seeded random suffix: identical on every repeat
    result = project.run("--genai-config", "genai.yaml", "--genai-repeat", "3")
    result.assert_outcomes(passed=4)
    assert project.summary()["metrics"]["determinism_rate"] == 1.0


def answers_by_id(project: Project) -> dict[str, str]:
    return {r["id"]: r["answer"] for r in project.last_results()}


def test_seeded_outputs_independent_of_order_subset_and_workers(project: Project) -> None:
    project.write_config(llm__model_id="random")
    project.run("--genai-config", "genai.yaml").assert_outcomes(passed=4)
    full = answers_by_id(project)
    assert len(set(full.values())) == 4
    project.run("--genai-config", "genai.yaml", "-k", "moon or h2o")
    assert answers_by_id(project) == {k: full[k] for k in ("h2o", "moon")}
    project.write_cases(list(reversed(CASES)))  # another order; the eval-set hash changes, the seeds do not
    project.run("--genai-config", "genai.yaml")
    assert answers_by_id(project) == full
    xdist = project.run("--genai-config", "genai.yaml", "-n", "2", subprocess=True)
    xdist.assert_outcomes(passed=4)
    assert answers_by_id(project) == full
    client = MlflowClient(tracking_uri=project.mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("test-exp").experiment_id])
    assert len(runs) == 4  # one per session, the xdist session included (workers do not log)


def _server_that_dies_after_one_request() -> tuple[str, threading.Thread]:
    """An MLflow-ish endpoint that answers the session-start check, then goes away (a mid-session outage)."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def _ok(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"experiments": []}')

        do_GET = do_POST = _ok

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)

    def serve_once() -> None:
        server.handle_request()
        server.server_close()

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_address[1]}", thread


def test_tracking_outage_keeps_local_results_and_upload_recovers(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, thread = _server_that_dies_after_one_request()
    project.write_config(tracking__uri=uri)
    started = time.monotonic()
    result = project.run("--genai-config", "genai.yaml")
    thread.join(5)
    result.assert_outcomes(passed=4)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*TRACKING FAILED:*results are safe in*pytest-genai upload*"])
    assert time.monotonic() - started < 120  # bounded retries: not MLflow's ~4 minutes (generous for a loaded CI box)
    run_dir = project.run_dirs()[-1]
    record = json.loads((run_dir / "run.json").read_text())
    assert len(project.last_results()) == 4 and record["tracking"]["run_id"] is None and record["tracking"]["error"]
    up = subprocess.run([sys.executable, "-m", "pytest_genai.cli", "upload", str(run_dir), "--tracking-uri", project.mlflow_uri,
                         "--experiment", "test-exp"], capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    assert run_of(project).data.metrics["f1"] == 1.0


def test_prompt_edit_without_version_bump_fails_against_store(project: Project) -> None:
    project.write_prompt(template="Q: {{ question }}")
    project.write_config(prompt={"id": "qa", "version": 1})
    project.run("--genai-config", "genai.yaml").assert_outcomes(passed=4)
    assert len(run_of(project).data.tags["prompt.hash"]) == 64
    project.write_prompt(template="Question: {{ question }}")  # edited, same version
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "qa@1" in result.stderr.str() and "edited without a version bump" in result.stderr.str()
    project.write_prompt(version=2, template="Question: {{ question }}")
    project.write_config(prompt={"id": "qa", "version": 2})
    assert project.run("--genai-config", "genai.yaml").ret == 0


def test_fixtures_expose_the_pinned_pipeline(project: Project) -> None:
    project.write_config()
    project.pytester.makepyfile(test_uses_fixtures="""
        from pytest_genai import Case

        def test_pipeline(genai_pipeline, genai_config, genai_seed):
            assert genai_seed == 7 and genai_config.get("eval.set") == "evals/qa.jsonl"
            answer = genai_pipeline(Case(id="x", question="q", answers=("Oslo",), context="Oslo is nice."))
            assert answer.text == "Oslo"
    """)
    project.run("--genai-config", "genai.yaml").assert_outcomes(passed=5)
    without = project.run("test_uses_fixtures.py")
    without.assert_outcomes(skipped=1)


def test_plain_string_pipeline_is_timed_by_the_harness(project: Project) -> None:
    project.write_config(pipeline="genai_user_pipeline:plain", gates={"latency_p95_ms": "< 1000", "f1": ">= 0.9"})
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == 0, result.stdout.str()
    metrics = project.summary()["metrics"]
    assert metrics["tokens_input_total"] == 0 and metrics["latency_p50_ms"] > 0


def test_nests_under_mlflow_pytest_plugin_run(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.mlflow_uri)
    project.write_config(tracking__uri=None)
    project.pytester.makepyfile(test_mlflow_marked="""
        import mlflow

        @mlflow.test
        def test_marked():
            assert mlflow.active_run() is not None
    """)
    result = project.run("-p", "mlflow.pytest.plugin", "--genai-config", "genai.yaml")
    result.assert_outcomes(passed=5)
    client = MlflowClient(tracking_uri=project.mlflow_uri)
    ours = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id]) if "config_hash" in r.data.tags]
    assert len(ours) == 1 and ours[0].data.tags.get("mlflow.parentRunId")


def test_broken_factory_stops_the_run_once_with_its_traceback(project: Project) -> None:
    project.pytester.makepyfile(broken_pipe="def factory(config):\n    raise ValueError('no such endpoint')\n")
    project.write_config(pipeline="broken_pipe:factory")
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "building the pipeline 'broken_pipe:factory' failed" in err and "ValueError: no such endpoint" in err
    assert project.run_dirs() == []  # nothing ran, nothing logged


def test_without_genai_config_nothing_heavy_is_imported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_light="""
        import sys

        def test_modules():
            heavy = [m for m in ("torch", "transformers", "faiss", "numpy", "mlflow", "jsonschema", "jinja2") if m in sys.modules]
            assert heavy == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:anyio", "-p", "no:pytester")
    result.assert_outcomes(passed=1)
    assert "genai" in result.stdout.str()  # the plugin was loaded (listed under plugins:)


def test_repeat_catches_nondeterminism(project: Project) -> None:
    project.pytester.makepyfile(flaky_pipe="""
        import itertools
        counter = itertools.count()

        def factory(config):
            return lambda case: f"{case.context.split()[0]} {next(counter)}"  # ignores the seed
    """)
    project.write_config(pipeline="flaky_pipe:factory", gates={"determinism_rate": "== 1"})
    result = project.run("--genai-config", "genai.yaml", "--genai-repeat", "2")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(["*outputs differ across 2 runs with the same seed (run 1: *; run 2: *)*",
                                 "*GATES FAILED: determinism_rate=0 (gate == 1)*"])


def test_env_drift_against_a_lock_file(project: Project) -> None:
    lock = project.path / "requirements.lock"
    from pytest_genai.tracking.envlock import installed_distributions

    pins = {n: v for n, v in installed_distributions().items() if n not in ("pytest-genai", "pyyaml")}
    lock.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())) + "not-a-real-package-xyz==1.0\npyyaml==0.0.1\n")
    project.write_config(env__lock_file="requirements.lock", gates={"env_drift": "== 0"})
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "*env drift: 2 package(s) differ from requirements.lock:*",
        "*pyyaml: locked 0.0.1, installed *", "*not-a-real-package-xyz: locked 1.0, not installed*",
        "*GATES FAILED: env_drift=2 (gate == 0)*",
    ])
    tags = run_of(project).data.tags
    assert tags["env.drift"] == "2" and len(tags["env.lock_hash"]) == 64


def test_secrets_stay_out_of_terminal_params_tags_and_files(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-9f8e7d6c5b4a"
    monkeypatch.setenv("MY_API_KEY", secret)
    project.pytester.makepyfile(leaky_pipe="""
        def factory(config):
            key = config.get("llm.api_key")
            def pipeline(case):
                if case.id == "rome":
                    raise RuntimeError(f"401 for key {key}")
                return (case.context or "").split()[0] + " " + key
            return pipeline
    """)
    project.write_config(pipeline="leaky_pipe:factory", llm__api_key="${MY_API_KEY}", gates={})
    result = project.run("--genai-config", "genai.yaml", "--junitxml=out.xml")
    out = result.stdout.str() + result.stderr.str()
    # the configured key's value is `***`; here, after the word "key", it is first a SECRET finding (a placeholder)
    assert re.search(r"401 for key (\*\*\*|<SECRET:[0-9a-f]{12}>)", out) and secret not in out
    run = run_of(project)
    assert "llm.api_key" not in run.data.params
    assert all(secret not in v for v in [*run.data.params.values(), *run.data.tags.values()])
    for f in project.run_dirs()[-1].rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f
    assert secret not in (project.path / "out.xml").read_text()
    assert secret.encode() not in Path(project.mlflow_uri[len("sqlite:///"):]).read_bytes()


def test_eval_set_outside_rootdir_and_run_from_elsewhere(pytester: pytest.Pytester, mlflow_uri: str) -> None:
    pytester.syspathinsert()
    proj = Project(pytester, mlflow_uri)
    (pytester.path / "data").mkdir()
    (pytester.path / "evals" / "qa.jsonl").rename(pytester.path / "data" / "qa.jsonl")
    (pytester.path / "proj").mkdir()
    proj.config["eval"] = {"set": "../data/qa.jsonl"}
    proj.config["tracking"]["results_dir"] = "../runs"
    proj.write_config(name="proj/genai.yaml")
    (pytester.path / "proj" / "pytest.ini").write_text("[pytest]\n")  # rootdir is proj/
    pytester.chdir()
    result = pytester.runpytest_inprocess("--genai-config", "proj/genai.yaml", "--rootdir", "proj", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["../data/qa.jsonl::paris"])
    result = pytester.runpytest_inprocess("--genai-config", "proj/genai.yaml", "--rootdir", "proj")
    result.assert_outcomes(passed=4)


def test_explicit_arguments_are_an_explicit_selection(project: Project) -> None:
    project.write_config()
    project.pytester.makepyfile(test_ordinary="def test_plain():\n    pass\n")
    result = project.run("--genai-config", "genai.yaml", "test_ordinary.py")
    result.assert_outcomes(passed=1)
    assert project.run_dirs() == []  # no case selected: no eval run recorded
    result = project.run("--genai-config", "genai.yaml", "test_ordinary.py", "evals")
    result.assert_outcomes(passed=5)


def test_tags_become_markers_but_never_pytest_builtins(project: Project) -> None:
    cases = [dict(CASES[0], tags=["geo", "skip"]), dict(CASES[1], tags=["lang:it", "geo"]), CASES[2]]
    project.write_cases(cases)
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", "--strict-markers", "-m", "geo")
    result.assert_outcomes(passed=2, deselected=1)  # 'skip' skipped nothing; 'lang:it' broke nothing


def test_skipped_case_counts_as_errored_not_as_partial(project: Project) -> None:
    project.write_config(gates={"error_rate": "== 0"})
    project.pytester.makeconftest("""
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if item.name == "h2o":
                    item.add_marker(pytest.mark.skip(reason="flaky upstream"))
    """)
    result = project.run("--genai-config", "genai.yaml")
    result.assert_outcomes(passed=3, skipped=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*GATES FAILED: error_rate=0.25 (gate == 0)*"])
    assert project.summary()["tags"]["genai.partial"] == "false"


def test_broken_factory_under_xdist_stops_each_worker_after_one_case(project: Project) -> None:
    project.pytester.makepyfile(broken_pipe="def factory(config):\n    raise ValueError('no such endpoint')\n")
    project.write_config(pipeline="broken_pipe:factory")
    result = project.run("--genai-config", "genai.yaml", "-n", "2", subprocess=True)
    outcomes = result.parseoutcomes()
    assert 1 <= outcomes.get("failed", 0) <= 2 and "passed" not in outcomes  # one case per worker at most, not 4
    assert result.ret == 4  # a usage error, as without xdist
    result.stdout.fnmatch_lines(["*RUN ERROR: the pipeline did not build on any worker: building the pipeline "
                                 "'broken_pipe:factory' failed: ValueError: no such endpoint*",
                                 "no eval ran; nothing was recorded or logged"])
    assert not (project.path / "runs").exists() or not any((project.path / "runs").iterdir())  # no run, as serial
