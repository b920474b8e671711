"""Every way out, with the new secret kinds planted (issue 24, "the sanitizer, measured"): a GitHub token, a Slack
token, a JWT, a PEM private-key block, a letters-only password, a random API key in prose and an obfuscated e-mail
reach a pipeline's questions, LLM answers (recorded, exported as a cassette), answer text and metadata; the session
registers the model. None of them may appear raw in the terminal, the JUnit file, the run folder (results, renders,
record, report.html), the response cache and cassette, the MLflow store (database and artifact folder; params, tags,
artifacts, traces and their assessments read back through the client), the registered model's bundle, or the
request records the packaged model writes when it serves. All values are fake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, registering
from pytest_genai.safety.pii import detect

NAME = "secrets-everywhere"
STUB_KEY = "sk-paths-0f1e2d3c4b5a69788796"
GHP = "ghp_Vq3LrT8wZx1NcY6pK0mJ4sB7dF2hG9aE5uQi"
SLACK = "xoxb-583920174625-4819203746518-Zq4vX9kL2mN7pR1sT6uW3yA8"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1LTg4NDEiLCJhdWQiOiJ3ZWIifQ."
       "Zq4vX9kL2mN7pR1sT6uW3yA8bC5dE0fG4hJ9kM2nP7q")
PEM_LINES = ["MIIEowIBAAKCAQEAu7Zq4vX9kL2mN7pR1sT6uW3yA8bC5dE0fG4hJ9kM2nP7qR3s",
             "T8uV1wX6yZ0aB5cD2eF7gH4iJ9kL0mQ3rS8tU1vW6xY9zA4bC7dE2fG5hJ0kM3n"]
PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(PEM_LINES) + "\n-----END RSA PRIVATE KEY-----"
PASSWORD = "swordfishblue"  # letters only: found by its name, `password`
API_KEY = "Zx9QwErTyUiOpAsDfGhJkL1234"  # found by the words before it
OBFUSCATED = "jane dot doe at example dot com"
# what must appear nowhere (the PEM by its lines: JSON stores escape its line breaks)
PLANTED = [GHP, SLACK, JWT, *PEM_LINES, "BEGIN RSA PRIVATE KEY", PASSWORD, API_KEY, "jane dot doe", STUB_KEY]

PIPELINE = '''
from pytest_genai import Answer

def factory(ctx):
    def pipeline(case, seed):
        messages = [{"role": "user", "content": f"Context: {case.context}\\nQuestion: {case.question}"}]
        gen = ctx.llm.generate(messages, seed=seed)  # through the response cache: recorded, exported as a cassette
        context = case.context or f"served | {case.question} | none\\npassword: -"  # a served request has none
        rest, password = context.split("\\npassword: ")
        _, secret, token = rest.split(" | ")
        return Answer(text=f"{gen.text} (source: {secret})", metadata={
            "source": secret, "db": {"user": "app", "password": password},
            "headers": {"Authorization": "Bearer " + token}})
    return pipeline
'''


def _cases() -> list[dict[str, Any]]:
    """The stub answers with the context's first two words; the pipeline adds the rest of it (the planted values,
    kept out of its own code, which the model bundle carries) to the answer and its metadata."""
    tail = f" | {JWT}\npassword: {PASSWORD}"  # a letters-only password is found by its name, at the line's end
    return [
        {"id": "github", "question": f"Is {GHP} still valid?", "answers": [GHP], "context": f"{GHP} is | {GHP}{tail}"},
        {"id": "slack", "question": "Which bot token?", "answers": [SLACK], "context": f"{SLACK} posts | {SLACK}{tail}"},
        {"id": "jwt", "question": "What is the session?", "answers": [JWT], "context": f"{JWT} ok | {JWT}{tail}"},
        {"id": "pem", "question": "Where is the key?", "answers": ["here"], "context": f"here it | {PEM}{tail}"},
        {"id": "prose", "question": f"Mail {OBFUSCATED}?", "answers": ["my api"],
         "context": f"my api | my api key is {API_KEY}, mail {OBFUSCATED}{tail}"},
    ]


def _written(project: Project) -> list[Path]:
    inputs = {project.path / "evals" / "qa.jsonl", project.path / "genai.yaml"}
    files = [p for p in project.path.rglob("*") if p.is_file() and p not in inputs and p.suffix not in (".py", ".pyc")]
    return files + [Path(project.mlflow_uri[len("sqlite:///"):])]


def _assert_nowhere(text: str, where: Any) -> None:
    for raw in PLANTED:
        assert raw not in text, (raw, where)


@pytest.mark.slow  # a registered model and a served request: ~25 s
def test_planted_secrets_of_every_kind_reach_no_output(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from pytest_genai.testing.openai_stub import OpenAIStub, StubBehaviour
    from pytest_genai.tracking.mlflow_client import use_tracking_uri

    assert all(detect(v) for v in (GHP, SLACK, JWT, PEM, f"password: {PASSWORD}", f"my api key is {API_KEY}", OBFUSCATED))
    project.pytester.makepyfile(genai_secret_pipeline=PIPELINE)
    monkeypatch.setenv("OPENAI_API_KEY", STUB_KEY)
    sink = tmp_path_factory.mktemp("serve") / "requests.jsonl"
    with OpenAIStub(StubBehaviour(api_key=STUB_KEY)) as stub:
        project.use_stub(stub.base_url, _cases())
        project.config.update(pipeline="genai_secret_pipeline:factory", gates={"error_rate": "== 0"},
                              monitor={"sink": "local"}, safety={"block": []})  # answers kept, not refused
        registering(project, NAME)
        result = project.run("--genai-config", "genai.yaml", "--junitxml=junit.xml", "--genai-cache", "record",
                             "--genai-cassette", "cassette.jsonl", "--genai-register")
        out = result.stdout.str() + result.stderr.str()
        assert result.ret == 0, out[-3000:]
        assert f"registered: {NAME} version 1" in out

        # the packaged model, served in this process: its request records go to the local sink
        monkeypatch.setenv("GENAI_MONITOR_PATH", str(sink))
        with use_tracking_uri(project.mlflow_uri):
            model = mlflow.pyfunc.load_model(f"models:/{NAME}@staging")
            import pandas as pd

            answers = model.predict(pd.DataFrame([{"question": f"my token {GHP}, password: {PASSWORD}"}]))
        del model
    assert len(answers) == 1 and sink.is_file()

    by_id = {r["id"]: r for r in project.last_results()}
    assert by_id["github"]["answer"].startswith("<SECRET:") and by_id["pem"]["metadata"]["source"].startswith("<SECRET:")
    assert by_id["prose"]["metadata"]["db"]["password"].startswith("<SECRET:")
    assert "<EMAIL:" in by_id["prose"]["question"] and by_id["jwt"]["safety_flags"] == ["SECRET"]

    files = _written(project)
    written = {f.name for f in files}
    assert {"junit.xml", "cassette.jsonl", "cache.sqlite3", "results.jsonl", "run.json", "report.html",
            "bundle.json"} <= written, written  # bundle.json: the registered model's bundle, in the artifact folder
    _assert_nowhere(out, "terminal")
    _assert_nowhere(sink.read_text(), sink)
    for f in files:
        _assert_nowhere(f.read_bytes().decode("utf-8", "replace"), f)

    client = MlflowClient(tracking_uri=project.mlflow_uri)
    run = client.get_run(project.summary()["tracking"]["run_id"])
    _assert_nowhere(json.dumps([run.data.params, run.data.tags]), "params and tags")
    exp = run.info.experiment_id
    traces = client.search_traces(locations=[exp], max_results=50)
    assert len(traces) >= len(_cases()) and any(t.info.assessments for t in traces)
    _assert_nowhere(json.dumps([t.to_json() for t in traces]), "traces and assessments")
    downloaded = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, tracking_uri=project.mlflow_uri,
                                                          dst_path=str(tmp_path_factory.mktemp("artifacts"))))
    artifacts = [p for p in downloaded.rglob("*") if p.is_file()]
    assert artifacts
    for f in artifacts:
        _assert_nowhere(f.read_bytes().decode("utf-8", "replace"), f)
