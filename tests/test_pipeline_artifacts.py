"""Custom pipelines that travel: `pipeline: {factory, artifacts, options}`. A declared data file is read through
`ctx.artifact(path)` in the eval and in the registered model alike (packaged in its bundle, sha256 in bundle.json
and a version tag), its content and the options are part of config_hash, and what is wrong with the mapping is a
`file:line: key: message` at load. (A pipeline that reads an undeclared file from the working directory is refused
at registration by the fresh-process probe: test_register_all_or_nothing.py,
test_a_model_that_cannot_answer_outside_the_project_is_not_registered.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_genai.config import ConfigError, load_config
from pytest_genai.testing.example_project import write_env_lock

NAME = "travel-qa"
REPO = Path(__file__).resolve().parents[1]
CAPITALS = {"paris": "Paris", "rome": "Rome"}
CASES = [
    {"id": "paris", "question": "What is the capital of France?", "answers": ["Paris"]},
    {"id": "rome", "question": "What is the capital of Italy?", "answers": ["Rome"]},
    {"id": "greet", "question": "How do you greet someone?", "answers": ["Bonjour"]},
]

# no context in the cases: the capitals can only come from the data file, the greeting only from the options
DATA_PIPELINE = '''
import json

def build(ctx):
    table = json.loads(ctx.artifact("data/capitals.json").read_text("utf-8"))
    greeting = ctx.options["greeting"]
    def pipeline(case):
        return greeting if case.id == "greet" else table[case.id]
    return pipeline
'''

UNDECLARED_PIPELINE = '''
def build(ctx):
    ctx.artifact("data/other.json")
    return lambda case: "x"
'''

MAPPING = {"factory": "travel_pipeline:build", "artifacts": ["data/capitals.json"], "options": {"greeting": "Bonjour"}}

LOAD = textwrap.dedent("""
    import json, sys
    import mlflow
    model = mlflow.pyfunc.load_model(sys.argv[1])
    print("PREDICTIONS " + json.dumps(model.predict(json.loads(sys.argv[2]))))
""")


@pytest.fixture
def travel(project: Any) -> Any:
    """A project whose pipeline reads data/capitals.json and options.greeting, set up to register."""
    (project.path / "data").mkdir()
    (project.path / "data" / "capitals.json").write_text(json.dumps(CAPITALS), "utf-8")
    project.pytester.makepyfile(travel_pipeline=DATA_PIPELINE)
    project.write_cases(CASES)
    write_env_lock(project.path / "requirements.lock")
    project.config.update(pipeline=json.loads(json.dumps(MAPPING)), env={"lock_file": "requirements.lock"},
                          registry={"model_name": NAME, "require_clean_git": False})
    project.write_config()
    return project


def test_a_mapping_pipeline_reads_its_artifact_and_options_and_logs_them(travel: Any) -> None:
    result = travel.run("--genai-config", "genai.yaml")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=3)
    assert {r["id"]: r["answer"] for r in travel.last_results()} == {"paris": "Paris", "rome": "Rome", "greet": "Bonjour"}
    result.stdout.fnmatch_lines(["genai: config genai.yaml (config_hash *), pipeline travel_pipeline:build*"])
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=travel.mlflow_uri).get_run(travel.summary()["tracking"]["run_id"])
    params = run.data.params
    assert params["pipeline"] == "travel_pipeline:build"  # the factory, in either form
    assert params["pipeline.options.greeting"] == "Bonjour"
    assert json.loads(params["pipeline.artifacts"]) == ["data/capitals.json"]
    assert run.data.tags["config_hash"] == load_config(travel.path / "genai.yaml").hash


def test_the_registered_model_carries_its_artifact_and_answers_without_the_project(
        travel: Any, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    result = travel.run("--genai-config", "genai.yaml", "--genai-register")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"registered: {NAME} version 1, alias staging -> 1 *"])
    data = (travel.path / "data" / "capitals.json").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    shutil.rmtree(travel.path / "data")  # the project's data and code are gone: only the model has them
    (travel.path / "travel_pipeline.py").unlink()

    from mlflow.tracking import MlflowClient

    from pytest_genai.config.pipeline_spec import artifacts_digest

    version = MlflowClient(tracking_uri=travel.mlflow_uri).get_model_version_by_alias(NAME, "staging")
    assert version.tags["pipeline.artifacts.hash"] == artifacts_digest({"data/capitals.json": sha})
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", travel.mlflow_uri)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@staging", dst_path=str(tmp_path_factory.mktemp("dl"))))
    bundle = local / "artifacts" / "bundle"
    assert json.loads((bundle / "bundle.json").read_text())["artifacts"] == {"data/capitals.json": sha}
    assert (bundle / "data" / "capitals.json").read_bytes() == data
    assert yaml.safe_load((bundle / "genai.yaml").read_text())["pipeline"] == MAPPING

    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.update(MLFLOW_TRACKING_URI=travel.mlflow_uri, HF_HUB_OFFLINE="1", GENAI_MONITOR_SINK="off")
    rows = [{"id": c["id"], "question": c["question"]} for c in CASES]
    out = subprocess.run([sys.executable, "-c", LOAD, f"models:/{NAME}@staging", json.dumps(rows)], cwd=elsewhere,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    predictions = json.loads(out.stdout.split("PREDICTIONS ", 1)[1])
    assert [p["answer"] for p in predictions] == ["Paris", "Rome", "Bonjour"]


def test_an_undeclared_artifact_stops_the_build_naming_pipeline_artifacts(travel: Any) -> None:
    travel.pytester.makepyfile(travel_pipeline=UNDECLARED_PIPELINE)
    result = travel.run("--genai-config", "genai.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(["ERROR: invalid genai config (1 problem(s)):",
                                 f"  {travel.path / 'genai.yaml'}:5: pipeline.artifacts: 'data/other.json' is not "
                                 "declared in pipeline.artifacts (declared: data/capitals.json): add it there*"])
    assert travel.run_dirs() == []


def test_a_run_with_artifacts_reproduces_from_its_folder(travel: Any) -> None:
    """The re-run takes the declared artifacts from the project (their content is part of config_hash)."""
    import argparse
    import contextlib
    import io

    from pytest_genai.reproduce import cli as reproduce_cli

    result = travel.run("--genai-config", "genai.yaml")
    assert result.ret == 0, result.stdout.str()
    parser = argparse.ArgumentParser(prog="pytest-genai")
    reproduce_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    out: list[str] = []
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = reproduce_cli.run(parser.parse_args(["reproduce", str(travel.run_dirs()[-1]), "--project", str(travel.path)]),
                                 echo=out.append)
    text = "\n".join(out)
    assert (code, err.getvalue()) == (0, ""), text
    assert "identical: 3 cases" in text and "config: the run's config.resolved.yaml" in text
    assert "pipeline.artifacts data/capitals.json" in text


# -- at load: validation and config_hash -------------------------------------------------------------------------

def _project(tmp_path: Path) -> Path:
    (tmp_path / "evals").mkdir(parents=True)
    (tmp_path / "evals" / "qa.jsonl").write_text(json.dumps(CASES[0]) + "\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "capitals.json").write_text(json.dumps(CAPITALS))
    return tmp_path


def _write(folder: Path, pipeline: Any) -> Path:
    path = folder / "genai.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "pipeline": pipeline, "eval": {"set": "evals/qa.jsonl"}},
                                   sort_keys=False))
    return path


def _errors(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    return str(info.value)


def test_a_misspelt_key_in_the_mapping_gets_a_did_you_mean(tmp_path: Path) -> None:
    path = _write(_project(tmp_path), {"factroy": "travel_pipeline:build", "artifacts": ["data/capitals.json"],
                                       "optoins": {"greeting": "Bonjour"}})
    msg = _errors(path)
    assert f"{path}:3: pipeline.factroy: unknown key 'pipeline.factroy' — did you mean 'pipeline.factory'?" in msg
    assert f"{path}:6: pipeline.optoins: unknown key 'pipeline.optoins' — did you mean 'pipeline.options'?" in msg


@pytest.mark.parametrize("artifact, message", [
    ("data/missing.json", "'data/missing.json' does not exist"),
    ("../outside.json", "'../outside.json' must be a path relative to the config's folder that stays inside it"),
    ("data/../../outside.json", "'data/../../outside.json' must be a path relative to the config's folder"),
])
def test_an_artifact_must_exist_inside_the_config_folder(tmp_path: Path, artifact: str, message: str) -> None:
    folder = _project(tmp_path / "project")
    (tmp_path / "outside.json").write_text("{}")  # it exists, but outside the project
    path = _write(folder, {"factory": "travel_pipeline:build", "artifacts": ["data/capitals.json", artifact]})
    msg = _errors(path)
    assert "1 problem(s)" in msg, msg
    assert f"{path}:6: pipeline.artifacts.1: {message}" in msg


def test_the_factory_of_a_mapping_is_checked_like_the_shorthand(tmp_path: Path) -> None:
    msg = _errors(_write(_project(tmp_path), {"factory": "not a target", "options": []}))
    assert "pipeline.factory: 'not a target' is neither 'builtin:<name>' nor 'package.module:factory'" in msg
    assert "pipeline.options: [] is not of type 'object'" in msg
    assert "pipeline builtin:rag needs a rag section" in _errors(_write(_project(tmp_path / "b"), {"factory": "builtin:rag"}))


def test_editing_an_artifact_or_an_option_changes_config_hash(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    path = _write(folder, json.loads(json.dumps(MAPPING)))
    before = load_config(path).hash
    assert load_config(path).hash == before
    (folder / "data" / "capitals.json").write_text(json.dumps({**CAPITALS, "rome": "Milan"}))
    edited = load_config(path).hash
    assert edited != before
    _write(folder, {**MAPPING, "options": {"greeting": "Salut"}})
    assert load_config(path).hash not in (before, edited)


def test_a_folder_artifact_is_hashed_by_the_files_it_holds(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    path = _write(folder, {"factory": "travel_pipeline:build", "artifacts": ["data"]})
    config = load_config(path)
    assert config.artifact("data/capitals.json") == folder / "data" / "capitals.json"  # a file in a declared folder
    before = config.hash
    (folder / "data" / "more.txt").write_text("another file")
    assert load_config(path).hash != before


def test_the_shorthand_and_its_mapping_are_the_same_config(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    short = load_config(_write(folder, "travel_pipeline:build"))
    mapping = load_config(_write(folder, {"factory": "travel_pipeline:build"}))
    assert short.hash == mapping.hash
    assert short.params() == mapping.params()
    assert mapping.pipeline.factory == short.pipeline.factory == "travel_pipeline:build"
    declared = load_config(_write(folder, json.loads(json.dumps(MAPPING))))
    assert declared.hash != short.hash
    assert declared.pipeline.options["greeting"] == "Bonjour"
    with pytest.raises(TypeError):
        declared.pipeline.options["greeting"] = "Salut"  # type: ignore[index]  # read-only


def test_an_artifact_edited_after_the_eval_is_not_packaged_and_a_tampered_bundle_does_not_load(tmp_path: Path) -> None:
    from pytest_genai.release.bundle import BundleError, BundleInfo, check_artifacts, copy_artifacts

    folder = _project(tmp_path / "project")
    config = load_config(_write(folder, json.loads(json.dumps(MAPPING))))
    config.hash  # what the eval measured (header, provenance): the artifacts' sha256s are read then
    copied = copy_artifacts(config, tmp_path / "ok", reserved=set())
    assert copied == config.artifact_hashes and (tmp_path / "ok" / "data" / "capitals.json").is_file()
    (folder / "data" / "capitals.json").write_text(json.dumps({"paris": "Lyon"}))
    with pytest.raises(BundleError, match="pipeline.artifacts: data/capitals.json is not the file the eval measured"):
        copy_artifacts(config, tmp_path / "edited", reserved=set())
    with pytest.raises(BundleError, match="data is a name the model bundle uses itself"):
        copy_artifacts(load_config(config.path), tmp_path / "clash", reserved={"data"})

    info = BundleInfo(format=1, pytest_genai_version="x", pipeline=MAPPING["factory"], eval_run_id=None, config_hash="c",
                      eval_set_hash="e", prompt=None, prompt_hash=None, index_fingerprint=None, model_hashes={},
                      env_lock_hash=None, git_commit="g", rag=False, artifacts=copied)
    check_artifacts(tmp_path / "ok", info)
    (tmp_path / "ok" / "data" / "capitals.json").write_text("{}")
    with pytest.raises(BundleError, match="the packaged artifact data/capitals.json hashes to"):
        check_artifacts(tmp_path / "ok", info)
    (tmp_path / "ok" / "data" / "capitals.json").unlink()
    with pytest.raises(BundleError, match="is missing from the model's bundle"):
        check_artifacts(tmp_path / "ok", info)


def test_a_secret_written_in_pipeline_options_is_masked_in_the_bundles_config(tmp_path: Path) -> None:
    """The bundle's genai.yaml is the config a registered model is rebuilt from: it goes through the session's
    sanitizer (secrets only), so a key written literally in `pipeline.options` never lands in the model store."""
    from pytest_genai.release.bundle import CONFIG_FILE, write_bundle
    from pytest_genai.runlog import Provenance, RunRecord
    from pytest_genai.sanitize import Sanitizer

    key = "sk-proj-abcdefghij0123456789abcd"
    folder = _project(tmp_path)
    config = load_config(_write(folder, {**MAPPING, "options": {"greeting": "Bonjour", "api_key": key}}), environ={})
    record = RunRecord(schema_version=2, status="complete", started_at="2026-12-07T05:00:00.000Z",
                       ended_at="2026-12-07T05:00:00.000Z", provenance=Provenance(config_hash=config.hash, seed=1))
    write_bundle(tmp_path / "bundle", config=config, prompt=None, index_path=None, record=record,
                 sanitizer=Sanitizer.from_config(config))
    written = (tmp_path / "bundle" / CONFIG_FILE).read_text("utf-8")
    assert key not in written
    options = yaml.safe_load(written)["pipeline"]["options"]
    assert options["greeting"] == "Bonjour" and options["api_key"].startswith("<SECRET:")
