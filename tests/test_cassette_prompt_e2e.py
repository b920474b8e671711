"""Cassettes and prompts through a real pytest session on the OpenAI stub (no mocks): a corrupt cassette
is a usage error naming the file and line (not an INTERNALERROR), a prompt message without content or
with an undefined variable stops the run once at start, and a cassette recorded with PII in the
questions and a redact key holds none of it yet replays to the same answers and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Project
from pytest_genai.testing.openai_stub import OpenAIStub

KEY = "sk-e2e-9f8e7d6c5b4a3210"
STUB_LATENCY_MS = 1  # the conftest `stub` answers after this
REDACT_KEY = "rk-e2e-0a1b2c3d4e5f6a7b8c9d"
CASES = [{"id": f"q{i:02d}", "question": f"Who wrote note {i}? Ask desk{i}.lee@example.com",
          "answers": [f"item{i} value"], "context": f"item{i} value is here"} for i in range(6)]


@pytest.fixture
def api_project(project: Project, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GENAI_REDACT_KEY", REDACT_KEY)
    project.use_stub(stub.base_url, CASES, temperature=0.0, max_retries=0)
    project.config["gates"] = {"error_rate": "== 0"}
    project.config["safety"] = {"redact_key": "${GENAI_REDACT_KEY}"}
    project.write_config()
    return project


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def test_a_corrupt_cassette_is_a_usage_error_naming_file_and_line(api_project: Project, stub: OpenAIStub) -> None:
    rec = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "record", "--genai-cassette", "cassette.jsonl")
    rec.assert_outcomes(passed=len(CASES))
    lines = (api_project.path / "cassette.jsonl").read_text().splitlines()
    (api_project.path / "broken.jsonl").write_text(lines[0] + "\n" + lines[1][:40] + "\n")
    result = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "replay", "--genai-cassette", "broken.jsonl")
    out = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "broken.jsonl:2: not valid JSON" in out
    assert "INTERNALERROR" not in out and "Traceback" not in out


def test_a_message_without_content_stops_the_run_naming_file_and_message(api_project: Project, stub: OpenAIStub) -> None:
    (api_project.path / "prompts" / "qa.yaml").write_text(
        "id: qa\nversion: 1\ntemplate:\n  - role: system\n    content:\n  - role: user\n    content: '{{ question }}'\n")
    result = api_project.run("--genai-config", "genai.yaml")
    out = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "qa.yaml:4: template[0] (system) has no content" in out
    assert "INTERNALERROR" not in out and stub.request_count == 0


def test_an_undefined_variable_stops_the_run_once_at_start(api_project: Project, stub: OpenAIStub) -> None:
    api_project.write_prompt(template="Context: {{ context }}\\nQuestion: {{ questoin }}")
    # A fresh process: in-process pytester runs drop modules (jinja2's included) imported by earlier runs,
    # which can leave a cached environment whose undefined type is not the module's StrictUndefined.
    result = api_project.run("--genai-config", "genai.yaml", subprocess=True)
    out = output(result)
    assert result.ret != pytest.ExitCode.OK
    assert out.count("template variable 'questoin' is undefined") == 1, out
    assert "did you mean 'question'?" in out and "variables available: case, context, question" in out
    assert "INTERNALERROR" not in out and stub.request_count == 0
    assert "passed" not in result.stdout.lines[-1]


def test_a_redacted_cassette_holds_no_pii_and_replays_the_same_run(api_project: Project, stub: OpenAIStub,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rec = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "record", "--genai-cassette", "cassette.jsonl")
    rec.assert_outcomes(passed=len(CASES))
    recorded = {r["id"]: r["answer"] for r in api_project.last_results()}
    metrics = api_project.summary()["metrics"]
    cache = api_project.path / ".pytest-genai" / "cache.sqlite3"
    blobs = (api_project.path / "cassette.jsonl").read_bytes() + b"".join(
        f.read_bytes() for f in cache.parent.glob("cache.sqlite3*"))
    assert b"example.com" not in blobs and b"desk0.lee" not in blobs
    assert b"Who wrote note" in blobs  # the questions are there, their e-mails are placeholders
    stub.stop()
    cache.unlink()
    rep = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "replay", "--genai-cassette", "cassette.jsonl")
    rep.assert_outcomes(passed=len(CASES))
    assert {r["id"]: r["answer"] for r in api_project.last_results()} == recorded
    replayed = api_project.summary()
    assert replayed["tags"]["genai.cache_hits"] == str(len(CASES))
    for name in ("em", "f1", "tokens_input_total", "tokens_output_total", "latency_p50_ms"):
        assert replayed["metrics"][name] == metrics[name], name
    # another redact key recomputes other keys: every case misses, none is served a wrong answer
    monkeypatch.setenv("GENAI_REDACT_KEY", "rk-another-1234567890abcdef")
    other = api_project.run("--genai-config", "genai.yaml", "--genai-cache", "replay", "--genai-cassette", "cassette.jsonl")
    other.assert_outcomes(failed=len(CASES))
    assert "safety.redact_key" in output(other)
