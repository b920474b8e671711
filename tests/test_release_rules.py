"""Who may register and what a bad release command says, on a custom pipeline (its code travels with the model):
refusals are one line and leave the eval's verdict alone; bad input fails at session start or exits 2, nothing moved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from conftest import registering

from pytest_genai.cli import main as cli

NAME = "custom-qa"


@pytest.fixture
def rel(project: Any) -> Any:
    return registering(project, NAME)


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


LOAD = textwrap.dedent("""
    import json, sys
    import mlflow
    model = mlflow.pyfunc.load_model(sys.argv[1])
    print("PREDICTIONS " + json.dumps(model.predict(json.loads(sys.argv[2]))))
""")


def test_a_custom_pipeline_registers_and_its_code_travels_with_the_model(rel: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    result = rel.run("--genai-config", "genai.yaml", "--genai-register")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"registered: {NAME} version 1, alias staging -> 1 *"])
    version = _client(rel.mlflow_uri).get_model_version_by_alias(NAME, "staging")
    assert version.tags["pipeline"] == "genai_user_pipeline:factory"
    logged = {r["id"]: r for r in rel.last_results()}
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # the pipeline module is importable only from the model's code
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.update(MLFLOW_TRACKING_URI=rel.mlflow_uri, HF_HUB_OFFLINE="1")
    cases = [json.loads(line) for line in (rel.path / "evals" / "qa.jsonl").read_text().splitlines()]
    rows = [{"id": c["id"], "question": c["question"], "context": c["context"]} for c in cases]
    out = subprocess.run([sys.executable, "-c", LOAD, f"models:/{NAME}@staging", json.dumps(rows)], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    predictions = json.loads(out.stdout.split("PREDICTIONS ", 1)[1])
    assert [p["answer"] for p in predictions] == [logged[c["id"]]["answer"] for c in cases]
    assert all("retrieved_doc_ids" not in p for p in predictions)  # not a RAG pipeline


@pytest.mark.parametrize("args, overrides, ret, why", [
    (("-k", "paris"), {}, 0, "the run is partial, not a full run of the eval set"),
    ((), {"gates": {"f1": ">= 0.99", "em": ">= 1.1"}}, 1, "gates failed: em 1 (needs >= 1.1)"),
])
def test_what_does_not_qualify_is_refused_in_one_line(rel: Any, args: tuple[str, ...], overrides: dict[str, Any], ret: int,
                                                     why: str) -> None:
    for key, value in overrides.items():
        if "__" not in key:
            rel.config[key] = value
    rel.write_config(**{k: v for k, v in overrides.items() if "__" in k})
    result = rel.run("--genai-config", "genai.yaml", "--genai-register", *args)
    assert result.ret == ret, result.stdout.str()
    lines = [ln for ln in result.stdout.lines if ln.startswith("registry: not registering")]
    assert len(lines) == 1 and why in lines[0], result.stdout.str()
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        _client(rel.mlflow_uri).get_registered_model(NAME)


@pytest.mark.parametrize("overrides, args, message", [
    ({"registry__model_name": None}, (), "registry.model_name*needs the registered model's name"),
    ({"tracking__enabled": False}, (), "tracking.enabled*registering needs the eval run logged"),
    ({}, ("--genai-tracking-uri", "file:///tmp/genai-file-store"), "*is a file store, which has no model registry*"),
    ({"registry__require_clean_git": True}, (), "*is not in a git checkout*so the code cannot be pinned*"),
])
def test_registering_needs_are_checked_at_session_start(rel: Any, overrides: dict[str, Any], args: tuple[str, ...],
                                                        message: str) -> None:
    rel.write_config(**overrides)
    result = rel.run("--genai-config", "genai.yaml", "--genai-register", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert rel.run_dirs() == []  # no case ran


def test_a_version_from_an_older_release_and_a_lone_version_are_clear_errors(rel: Any, capsys: pytest.CaptureFixture[str],
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert rel.run("--genai-config", "genai.yaml", "--genai-register").ret == 0
    monkeypatch.chdir(rel.path)
    uri = rel.mlflow_uri
    assert cli(["rollback", NAME, "--alias", "staging", "--tracking-uri", uri]) == 2
    assert "has pointed only at v1: there is no earlier version to roll back to" in capsys.readouterr().err
    _client(uri).set_model_version_tag(NAME, "1", "genai.bundle_format", "0")
    assert cli(["promote", NAME, "--from", "staging", "--to", "production", "--new-alias", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "was logged by" in err and "bundle format 0" in err and "re-register it" in err
    assert "production" not in _client(uri).get_registered_model(NAME).aliases


def test_a_bundle_packaged_by_another_release_is_refused_on_load() -> None:
    from pytest_genai.release.bundle import BUNDLE_FORMAT, BundleError, BundleInfo, check_release

    info = BundleInfo(BUNDLE_FORMAT, "0.0.1", "builtin:llm", None, "c", "e", None, None, None, {}, None, "x", False)
    with pytest.raises(BundleError, match=r"packaged by pytest-genai 0\.0\.1, but .* is installed"):
        check_release(info)


@pytest.mark.slow  # the PostgreSQL + MLflow server
def test_the_release_loop_against_a_real_authenticated_server(rel: Any, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str],
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    """`mlflow server` on loopback (PostgreSQL, proxied artifacts, basic auth): register twice, promote, roll back,
    promote, and a fresh process loads models:/NAME@production through the server with the same credentials."""
    for key, value in mlflow_server.env().items():
        monkeypatch.setenv(key, value)
    uri = mlflow_server.uri
    for _ in range(2):
        result = rel.run("--genai-config", "genai.yaml", "--genai-register", "--genai-tracking-uri", uri)
        assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"registered: {NAME} version 2, alias staging -> 2 *"])
    monkeypatch.chdir(rel.path)
    client = _client(uri)
    assert cli(["promote", NAME, "--from", "staging", "--to", "production", "--new-alias", "--tracking-uri", uri]) == 0
    client.set_registered_model_alias(NAME, "staging", "1")  # as if version 1 were the candidate now
    assert cli(["promote", NAME, "--from", "staging", "--to", "production", "--tracking-uri", uri]) == 0
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    assert cli(["rollback", NAME, "--tracking-uri", uri]) == 0
    assert "production -> version 2 (was 1)" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "2"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    cases = [json.loads(line) for line in (rel.path / "evals" / "qa.jsonl").read_text().splitlines()]
    rows = [{"id": c["id"], "question": c["question"], "context": c["context"]} for c in cases]
    out = subprocess.run([sys.executable, "-c", LOAD, f"models:/{NAME}@production", json.dumps(rows)],
                         cwd=tmp_path_factory.mktemp("server-load"), env={**env, "MLFLOW_TRACKING_URI": uri},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    logged = {r["id"]: r["answer"] for r in rel.last_results()}
    assert [p["answer"] for p in json.loads(out.stdout.split("PREDICTIONS ", 1)[1])] == [logged[c["id"]] for c in cases]
    secret = mlflow_server.admin_password
    version = client.get_model_version(NAME, "2")
    assert secret not in json.dumps(version.tags) and secret not in json.dumps(client.get_registered_model(NAME).tags)


def test_promotion_refuses_no_ops_reserved_aliases_and_unchecked_baseline_gates(rel: Any, capsys: pytest.CaptureFixture[str],
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert rel.run("--genai-config", "genai.yaml", "--genai-register").ret == 0
    monkeypatch.chdir(rel.path)
    uri = rel.mlflow_uri
    base = ["--tracking-uri", uri]
    assert cli(["promote", NAME, "--from", "staging", "--to", "production", "--new-alias", *base]) == 0
    capsys.readouterr()
    assert cli(["promote", NAME, "--from", "staging", "--to", "production", *base]) == 2
    assert "already points at version 1" in capsys.readouterr().err
    for bad in ("latest", "v3", "bad alias"):
        assert cli(["promote", NAME, "--from", "staging", "--to", bad, *base]) == 2
        assert "is not a usable alias" in capsys.readouterr().err
    rel.config["gates"] = {"f1": [">= 0.5", ">= baseline - 0.02"]}
    rel.write_config("strict.yaml")
    assert cli(["promote", NAME, "--from", "staging", "--to", "canary", "--new-alias", "--config", "strict.yaml", *base]) == 2
    captured = capsys.readouterr()
    assert "skipped" in captured.out and "this version's eval had none" in captured.out
    history = json.loads(_client(uri).get_registered_model(NAME).tags["genai.alias_history"])
    assert [h["action"] for h in history] == ["register", "promote"]  # the refusals recorded nothing
    assert "canary" not in _client(uri).get_registered_model(NAME).aliases


def test_a_reserved_alias_in_the_config_is_an_error_before_any_case(rel: Any) -> None:
    rel.write_config(registry__alias="latest")
    result = rel.run("--genai-config", "genai.yaml", "--genai-register")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*registry.alias*"])
    assert rel.run_dirs() == []


def test_promoting_to_an_alias_the_model_never_had_needs_new_alias(rel: Any, capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in --to (`prodution`) would create an alias nobody serves: refused with the aliases the model has and
    had (its alias history too: `canary` was removed outside pytest-genai but is known), unless --new-alias."""
    assert rel.run("--genai-config", "genai.yaml", "--genai-register").ret == 0
    monkeypatch.chdir(rel.path)
    base = ["--tracking-uri", rel.mlflow_uri]
    client = _client(rel.mlflow_uri)
    assert cli(["promote", NAME, "--from", "staging", "--to", "canary", "--new-alias", *base]) == 0
    client.delete_registered_model_alias(NAME, "canary")  # gone from the model, still in its alias history
    capsys.readouterr()
    assert cli(["promote", NAME, "--from", "staging", "--to", "prodution", *base]) == 2
    err = capsys.readouterr().err
    assert "has never had alias 'prodution'" in err and "known aliases: canary, staging" in err, err
    assert "--new-alias" in err
    assert set(client.get_registered_model(NAME).aliases) == {"staging"}  # nothing moved
    assert cli(["promote", NAME, "--from", "staging", "--to", "canary", *base]) == 0  # known from the history
    assert cli(["promote", NAME, "--from", "staging", "--to", "production", "--new-alias", *base]) == 0
    assert set(client.get_registered_model(NAME).aliases) == {"staging", "canary", "production"}
