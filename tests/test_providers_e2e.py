"""API-model evals end to end against the real OpenAI-compatible stub on 127.0.0.1: record/replay
(replay with the server down and no key), cassettes, concurrency and xdist leaving results unchanged,
and the key never persisted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import Project
from pytest_genai.testing.openai_stub import OpenAIStub

KEY = "sk-e2e-7a6b5c4d3e2f1a0b"
STUB_LATENCY_MS = 20  # the conftest `stub` answers after this
CASES = [{"id": f"q{i:02d}", "question": f"What is item {i}?", "answers": [f"item{i} value"], "context": f"item{i} value is here"}
         for i in range(24)]


@pytest.fixture
def api_project(project: Project, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    project.use_stub(stub.base_url, CASES, temperature=0.0, max_retries=2, backoff_base_s=0.01,
                     pricing={"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.5})
    project.config["gates"] = {"error_rate": "== 0"}
    project.write_config()
    return project


def answers(project: Project) -> dict[str, tuple[str, float, int]]:
    return {r["id"]: (r["answer"], r["f1"], r["output_tokens"]) for r in project.last_results()}


def test_record_then_replay_without_server_or_key(api_project: Project, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "record", "--genai-cassette", "cassette.jsonl")
    rec.assert_outcomes(passed=len(CASES))
    recorded, recorded_metrics = answers(api_project), api_project.summary()["metrics"]
    assert stub.request_count == len(CASES)
    assert all(r["system_fingerprint"] == "fp_stub_v1" and r["cached"] is False for r in api_project.last_results())
    stub.stop()
    monkeypatch.delenv("OPENAI_API_KEY")  # a fork's CI: no secret (the variable is not set at all), no provider
    (api_project.path / ".pytest-genai" / "cache.sqlite3").unlink()  # replay from the committed cassette only
    rep = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "replay", "--genai-cassette", "cassette.jsonl")
    rep.assert_outcomes(passed=len(CASES))
    assert answers(api_project) == recorded
    replayed = api_project.summary()
    for metric in ("em", "f1", "tokens_input_total", "tokens_output_total", "cost_total_usd", "latency_p50_ms", "latency_p95_ms"):
        assert replayed["metrics"][metric] == recorded_metrics[metric], metric  # recorded latency, exactly
    assert replayed["tags"]["genai.latency_source"] == "recorded"
    assert replayed["tags"]["genai.cache_hits"] == str(len(CASES)) and replayed["tags"]["genai.cache_misses"] == "0"
    assert (api_project.run_dirs()[-1] / "results.jsonl").is_file()


def test_replay_miss_fails_the_case_naming_the_key(api_project: Project, stub: OpenAIStub) -> None:
    api_project.run("--genai-config", "genai.yaml", "--genai-cache", "record").assert_outcomes(passed=len(CASES))
    stub.stop()
    edited = [dict(c, question=c["question"] + " (edited)") if c["id"] == "q03" else c for c in CASES]
    api_project.write_cases(edited)
    result = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "replay")
    result.assert_outcomes(passed=len(CASES) - 1, failed=1)
    out = result.stdout.str()
    assert "FAILED evals/qa.jsonl::q03" in out and "replay" in out.lower() and "key" in out
    # one error that names the case and says how to record it
    assert "no recorded response for case 'q03'" in out
    assert "pytest --genai-config genai.yaml --genai-cache record -k 'q03'" in out


def test_replay_from_the_cache_needs_no_key_and_a_miss_with_a_call_names_the_variable(
        api_project: Project, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> None:
    api_project.run("--genai-config", "genai.yaml", "--genai-cache", "record").assert_outcomes(passed=len(CASES))
    monkeypatch.delenv("OPENAI_API_KEY")
    api_project.run("--genai-config", "genai.yaml", "--genai-cache", "replay").assert_outcomes(passed=len(CASES))
    assert stub.request_count == len(CASES)
    # read-write: the recorded cases are served; the new one would call the provider, which needs the key now
    api_project.write_cases(CASES + [{"id": "new", "question": "What is new?", "answers": ["x"], "context": "x"}])
    result = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "read-write")
    result.assert_outcomes(passed=len(CASES), failed=1)
    out = result.stdout.str()
    assert "FAILED evals/qa.jsonl::new" in out
    assert "genai.yaml:7: llm.api_key: environment variable OPENAI_API_KEY is not set" in out, out
    assert stub.request_count == len(CASES) and KEY not in out


def cassette_models(path: Path) -> list[str]:
    return [json.loads(line)["request"]["model"] for line in path.read_text().splitlines()]


def test_a_cassette_holds_only_its_runs_entries_of_a_shared_cache(api_project: Project, stub: OpenAIStub) -> None:
    api_project.write_config("other.yaml", llm__model_id="other-model")  # another config sharing the cache
    api_project.run("--genai-config", "other.yaml", "--genai-cache", "record").assert_outcomes(passed=len(CASES))
    rec = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "record", "--genai-cassette", "c.jsonl")
    rec.assert_outcomes(passed=len(CASES))
    assert cassette_models(api_project.path / "c.jsonl") == ["stub-model"] * len(CASES)  # not the 48 of the cache
    # with xdist the workers' answers are the controller's run: still this run's entries only
    xdist = api_project.run("--genai-config", "other.yaml", "--genai-cache", "record", "--genai-cassette", "x.jsonl",
                            "-n", "2", subprocess=True)
    xdist.assert_outcomes(passed=len(CASES))
    assert cassette_models(api_project.path / "x.jsonl") == ["other-model"] * len(CASES)
    # a subset's cassette holds that subset
    api_project.run("--genai-config", "genai.yaml", "--genai-cache", "record", "--genai-cassette", "k.jsonl",
                    "-k", "q01 or q02").assert_outcomes(passed=2)
    assert len(cassette_models(api_project.path / "k.jsonl")) == 2


def test_concurrency_leaves_outputs_and_metrics_unchanged(api_project: Project) -> None:
    api_project.run("--genai-config", "genai.yaml").assert_outcomes(passed=len(CASES))
    sequential = answers(api_project), {k: v for k, v in api_project.summary()["metrics"].items() if "latency" not in k}
    result = api_project.run("--genai-config", "genai.yaml", "--genai-concurrency", "8", "-v")
    result.assert_outcomes(passed=len(CASES))
    ids = [line.split("::")[1].split()[0] for line in result.stdout.lines if "evals/qa.jsonl::" in line and "PASSED" in line]
    assert ids == [c["id"] for c in CASES]  # items still report one by one, in collection order
    concurrent = answers(api_project), {k: v for k, v in api_project.summary()["metrics"].items() if "latency" not in k}
    assert concurrent == sequential
    assert api_project.summary()["tags"]["genai.concurrency"] == "8"


def test_xdist_gives_the_same_results_and_one_run(api_project: Project, stub: OpenAIStub) -> None:
    api_project.run("--genai-config", "genai.yaml").assert_outcomes(passed=len(CASES))
    single = answers(api_project), {k: v for k, v in api_project.summary()["metrics"].items() if "latency" not in k}
    stub.reset_counters()
    xdist = api_project.run("--genai-config", "genai.yaml", "-n", "2", "--genai-concurrency", "4", subprocess=True)
    xdist.assert_outcomes(passed=len(CASES))
    assert stub.request_count == len(CASES)  # each case once: workers do not prefetch what they do not run
    assert "execution plan: pytest-xdist workers, each running its share one case at a time" in xdist.stdout.str()
    assert (answers(api_project), {k: v for k, v in api_project.summary()["metrics"].items() if "latency" not in k}) == single
    client = MlflowClient(tracking_uri=api_project.mlflow_uri)
    assert len(client.search_runs([client.get_experiment_by_name("test-exp").experiment_id])) == 2


def test_the_key_is_never_persisted(api_project: Project, stub: OpenAIStub) -> None:
    result = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "read-write", "--genai-cassette", "c.jsonl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # a cassette goes with record or replay only
    result = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "record", "--genai-cassette", "c.jsonl",
                             "--junitxml=junit.xml")
    result.assert_outcomes(passed=len(CASES))
    assert KEY not in result.stdout.str() + result.stderr.str()
    files = [p for p in api_project.path.rglob("*") if p.is_file() and not p.suffix == ".py"]
    files.append(Path(api_project.mlflow_uri[len("sqlite:///"):]))
    assert any(p.name == "cache.sqlite3" for p in files) and any(p.name == "c.jsonl" for p in files)
    for f in files:
        assert KEY.encode() not in f.read_bytes(), f
    params = json.dumps(api_project.summary()["params"])
    assert "api_key" not in params and api_project.summary()["params"]["llm.base_url"].startswith("http://")


def test_a_collection_error_costs_no_call_and_records_no_run(api_project: Project, stub: OpenAIStub) -> None:
    api_project.pytester.makepyfile(test_broken="import no_such_module_xyz\n")
    result = api_project.run("--genai-config", "genai.yaml", "--genai-concurrency", "4", "test_broken.py", "evals")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert stub.request_count == 0 and api_project.run_dirs() == []
