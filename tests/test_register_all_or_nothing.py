"""--genai-register is all or nothing: what registering needs (lock, clean tree, ...) stops the session before any
case runs; a version comes only from a session that exits 0 (an `expect` case or an ordinary test failing beside
the cases blocks it); and only a packaged model that answers a question in a fresh process outside the project."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import CASES, registering

NAME = "custom-qa"
CASE_SECONDS = 2.0  # each case of the slow pipeline: a session that ran them takes >= 4 x this

SLOW_PIPELINE = '''
import time
from pathlib import Path

def factory(config):
    Path("pipeline-built.marker").write_text("built")
    def pipeline(case):
        time.sleep(%r)
        return (case.context or "").split()[0]
    return pipeline
''' % CASE_SECONDS

# reads a data file relative to the working directory: fine in the project, broken anywhere else
RELATIVE_DATA_PIPELINE = '''
import json
from pathlib import Path

def factory(config):
    table = json.loads(Path("data/capitals.json").read_text())
    def pipeline(case):
        return table.get(case.id) or (case.context or "").split()[0]
    return pipeline
'''


@pytest.fixture
def rel(project: Any) -> Any:
    return registering(project, NAME)


def _model_exists(uri: str) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=uri).get_registered_model(NAME)
    except MlflowException:
        return False
    return True


def _gates_passed(rel: Any) -> bool:
    gates = rel.summary()["gates"]
    return bool(gates) and all(g["passed"] for g in gates)


def _git_commit_all(path: Path) -> None:
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    (path / ".gitignore").write_text("__pycache__/\nruns/\n*.marker\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(git + cmd, cwd=path, check=True, capture_output=True)


def test_a_failing_expect_case_registers_nothing(rel: Any) -> None:
    cases = [dict(c) for c in CASES]
    cases[0]["expect"] = {"contains": "Lyon"}  # paris: answered "Paris", f1 gate still passes
    rel.write_cases(cases)
    result = rel.run("--genai-config", "genai.yaml", "--genai-register")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert _gates_passed(rel)  # only the expect case failed the session
    result.stdout.fnmatch_lines([f"registry: not registering {NAME}: the session failed (exit 1)"])
    assert not _model_exists(rel.mlflow_uri)


def test_a_failing_ordinary_test_in_the_same_session_registers_nothing(rel: Any) -> None:
    rel.pytester.makepyfile(test_other="def test_unrelated_check():\n    assert 1 + 1 == 3\n")
    result = rel.run("--genai-config", "genai.yaml", "--genai-register")  # no arguments: the folder and the eval set
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.assert_outcomes(passed=4, failed=1)
    assert _gates_passed(rel)
    result.stdout.fnmatch_lines([f"registry: not registering {NAME}: the session failed (exit 1)"])
    assert not _model_exists(rel.mlflow_uri)


@pytest.mark.parametrize("setup, message", [
    ("dirty", "*the git tree is dirty (untracked: evals/notes.txt)*see `git status`*no case was run*"),
    ("no-lock", "*env.lock_file*missing.lock does not exist*create it with `pytest-genai lock`*no case was run*"),
    ("other-lock", "*the installed packages are not the ones other.lock pins (pytest: locked 0.0.1, installed *)*"
                   "`pytest-genai lock --force`*no case was run*"),
    ("no-gates", "*the config has no gates: a model is registered only through passed gates*no case was run*"),
])
def test_what_registering_needs_stops_the_session_before_any_case(rel: Any, setup: str, message: str) -> None:
    rel.pytester.makepyfile(slow_pipeline=SLOW_PIPELINE)
    rel.config["pipeline"] = "slow_pipeline:factory"
    if setup == "dirty":
        rel.config["registry"]["require_clean_git"] = True
        rel.write_config()
        _git_commit_all(rel.path)
        (rel.path / "evals" / "notes.txt").write_text("not committed\n")
    elif setup == "no-gates":
        rel.write_config(gates=None)
    elif setup == "no-lock":
        rel.write_config(env__lock_file="missing.lock")
    else:
        (rel.path / "other.lock").write_text("pytest==0.0.1\n")
        rel.write_config(env__lock_file="other.lock")
    result = rel.run("--genai-config", "genai.yaml", "--genai-register")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: --genai-register: {message}"])
    assert "make lock" not in result.stderr.str()
    assert not (rel.path / "pipeline-built.marker").exists()  # the pipeline was never built: no case ran
    assert rel.run_dirs() == []
    assert result.duration < 4 * CASE_SECONDS / 2, result.duration  # well under the >= 8 s the cases take
    assert not _model_exists(rel.mlflow_uri)


def test_register_on_pass_without_the_flag_notes_a_dirty_tree_and_runs(rel: Any) -> None:
    """registry.register_on_pass is the local loop too: a dirty tree is said up front and at the end, not fatal."""
    rel.config["registry"].update(require_clean_git=True, register_on_pass=True)
    rel.write_config()
    _git_commit_all(rel.path)
    (rel.path / "evals" / "notes.txt").write_text("not committed\n")
    result = rel.run("--genai-config", "genai.yaml")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["genai: registry.register_on_pass: this session will not register: the git tree is "
                                 "dirty (untracked: evals/notes.txt)*`git status`*"])
    lines = [ln for ln in result.stdout.lines if ln.startswith(f"registry: not registering {NAME}")]
    assert len(lines) == 1 and "the git tree is dirty" in lines[0] and "(checked at session start)" in lines[0], lines
    assert not _model_exists(rel.mlflow_uri)


def test_a_model_that_cannot_answer_outside_the_project_is_not_registered(rel: Any) -> None:
    (rel.path / "data").mkdir()
    (rel.path / "data" / "capitals.json").write_text('{"paris": "Paris", "rome": "Rome"}')
    rel.pytester.makepyfile(genai_data_pipeline=RELATIVE_DATA_PIPELINE)
    rel.write_config(pipeline="genai_data_pipeline:factory")
    result = rel.run("--genai-config", "genai.yaml", "--genai-register")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    assert _gates_passed(rel)  # the eval itself passed, in the project folder
    result.stdout.fnmatch_lines([f"registry: not registering {NAME}: the packaged model did not answer a question when "
                                 "loaded in a fresh process outside the project folder: FileNotFoundError: *"
                                 "data/capitals.json*"])
    assert not _model_exists(rel.mlflow_uri)
    from mlflow.tracking import MlflowClient

    run_id = rel.summary()["tracking"]["run_id"]
    run = MlflowClient(tracking_uri=rel.mlflow_uri).get_run(run_id)
    assert "genai.registered" not in run.data.tags
    assert not MlflowClient(tracking_uri=rel.mlflow_uri).search_logged_models([run.info.experiment_id])  # nothing logged
