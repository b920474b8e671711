"""Safety end to end: an eval whose questions, contexts and answers carry seeded PII and secrets, run
against the real stub with the cache recording; then the whole MLflow store (database and artifact
folder), the local results, the cache, the cassette, the JUnit file and the terminal are searched for
every raw value. The safety gate fails the session; a replay of the redacted cassette gives the same
metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import Project
from pytest_genai.safety.pii import detect
from pytest_genai.testing.openai_stub import OpenAIStub

KEY = "sk-safety-0f1e2d3c4b5a6978"
SEEDED = {
    "email": "alice.smith@example.com",
    "card": "4111111111111111",
    "ssn": "078-05-1120",
    "iban": "GB82WEST12345698765432",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "phone": "+44-20-7946-0958",
}
# The stub answers with the first two words of the "Context:" line: each answer leaks its value.
CASES = [
    {"id": f"leak_{name}", "question": f"What is on file for {SEEDED['email']} under {name}?",
     "answers": [f"{value} ok"], "context": f"{value} ok. Internal record {name}."}
    for name, value in SEEDED.items()
] + [
    {"id": "toxic", "question": "How did the reviewer react?", "answers": ["fucking idiots"],
     "context": f"fucking {SEEDED['email']}, said the reviewer."},  # toxic and PII in one answer
    {"id": "clean", "question": "What is the capital of Italy?", "answers": ["Rome is"], "context": "Rome is the capital."},
]


@pytest.fixture
def safety_project(project: Project, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert all(detect(v) for v in SEEDED.values())  # every seeded value is one the detectors know
    project.use_stub(stub.base_url, CASES)
    project.config.update({
        "safety": {"toxicity": {"enabled": True, "threshold": 0.5}, "block": ["SECRET"],
                   "critical": ["SECRET", "CARD", "SSN", "IBAN", "TOXICITY"]},
        "gates": {"safety_critical_count": "== 0"},
    })
    project.write_config()
    return project


def persisted_files(project: Project) -> list[Path]:
    """Everything the run wrote: results, cache, cassette, JUnit, the MLflow db and artifact folder.
    The inputs themselves (the eval set, the config, the prompt, the pipeline module) are excluded."""
    inputs = {project.path / "evals" / "qa.jsonl", project.path / "genai.yaml"}
    files = [p for p in project.path.rglob("*") if p.is_file() and p not in inputs and p.suffix not in (".py", ".pyc")
             and "prompts" not in p.parts]
    return files + [Path(project.mlflow_uri[len("sqlite:///"):])]


def test_no_raw_pii_or_secret_is_persisted_and_the_safety_gate_fails(safety_project: Project, stub: OpenAIStub,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    result = safety_project.run("--genai-config", "genai.yaml", "--genai-cache", "record", "--genai-cassette",
                                "cassette.jsonl", "--junitxml=junit.xml")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*GATES FAILED: safety_critical_count=* (gate == 0)*"])
    recorded = safety_project.summary()
    by_id = {r["id"]: r for r in safety_project.last_results()}
    assert by_id["leak_aws"]["blocked"] and by_id["leak_aws"]["answer"] == "I can't share that."
    assert by_id["leak_card"]["safety_flags"] == ["CARD"] and by_id["leak_card"]["critical"]
    assert by_id["leak_email"]["safety_flags"] == ["EMAIL"] and not by_id["leak_email"]["critical"]
    assert by_id["toxic"]["safety_flags"] == ["EMAIL", "TOXICITY"] and by_id["clean"]["safety_flags"] == []
    assert by_id["leak_card"]["answer"].startswith("<CARD:") and by_id["leak_card"]["f1"] == 1.0  # gold redacted alike
    m = recorded["metrics"]
    assert m["safety_critical_count"] == 5 and m["block_rate"] == pytest.approx(1 / 8)
    assert m["pii_flag_rate"] == pytest.approx(7 / 8) and m["toxicity_flag_rate"] == pytest.approx(1 / 8)
    run = MlflowClient(tracking_uri=safety_project.mlflow_uri).search_runs(
        [MlflowClient(tracking_uri=safety_project.mlflow_uri).get_experiment_by_name("test-exp").experiment_id])[0]
    assert run.data.tags["safety.redact"] == "true" and run.data.metrics["safety_critical_count"] == 5

    out = result.stdout.str() + result.stderr.str()
    files = persisted_files(safety_project)
    names = {p.name for p in files}
    assert {"results.jsonl", "renders.jsonl", "cache.sqlite3", "cassette.jsonl", "junit.xml", "mlflow.db"} <= names
    assert any("mlruns" in p.parts or "artifacts" in p.parts for p in files)  # the MLflow artifact folder is searched
    for raw in [*SEEDED.values(), KEY]:
        assert raw not in out, raw
        for f in files:
            assert raw.encode() not in f.read_bytes(), (raw, f)

    # replay the redacted cassette with the provider down: the same metrics
    stub.stop()
    (safety_project.path / ".pytest-genai" / "cache.sqlite3").unlink()
    replay = safety_project.run("--genai-config", "genai.yaml", "--genai-cache", "replay", "--genai-cassette", "cassette.jsonl")
    assert replay.ret == 1
    replayed = safety_project.summary()["metrics"]
    for metric in ("em", "f1", "pii_flag_rate", "toxicity_flag_rate", "block_rate", "safety_critical_count", "latency_p50_ms"):
        assert replayed[metric] == m[metric], metric


def test_redact_false_is_for_private_stores_and_is_tagged(safety_project: Project) -> None:
    safety_project.config["safety"]["redact"] = False
    safety_project.write_config()
    safety_project.run("--genai-config", "genai.yaml")
    summary = safety_project.summary()
    assert summary["tags"]["safety.redact"] == "false"
    assert SEEDED["card"] in (safety_project.run_dirs()[-1] / "results.jsonl").read_text()
