"""`pytest-genai init`: starters that validate and pass on their first run, a workflow that is schema-valid,
pinned and zizmor-clean, and a second `init` that never overwrites the user's files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_genai.cli import main
from pytest_genai.prompts import load_prompt, read_lock
from pytest_genai.scaffold import STARTERS

BIN = Path(sys.executable).parent
KEY = "sk-init-test-0123456789"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def _init(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["init", str(root), "--no-models", *args]) == 0
    return capsys.readouterr().out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MLFLOW_", "OPENAI_"))}
    env["PYTEST_GENAI_MODELS_DIR"] = os.environ["PYTEST_GENAI_MODELS_DIR"]
    env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    return {**env, **extra}


def _pytest(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "--genai-config", "genai.yaml", "-p", "no:cacheprovider",
                           *args], cwd=root, capture_output=True, text=True, env=_env(**env), timeout=900)


@pytest.mark.parametrize("starter", sorted(STARTERS))
def test_every_starter_validates_and_locks_its_prompt(starter: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = _init(tmp_path, "--starter", starter, capsys=capsys)
    for name in ("genai.yaml", "prompts.lock.json", ".github/workflows/genai.yml", ".gitignore"):
        assert (tmp_path / name).is_file(), name
        assert f"wrote    {name}" in out
    cfg = yaml.safe_load((tmp_path / "genai.yaml").read_text("utf-8"))
    prompt = load_prompt(tmp_path / "prompts", cfg["prompt"]["id"], cfg["prompt"]["version"])
    assert read_lock(tmp_path / "prompts.lock.json") == {prompt.ref: prompt.hash}
    if starter == "api":
        os.environ.setdefault("OPENAI_API_KEY", KEY)  # validate resolves ${OPENAI_API_KEY}
    assert main(["validate", str(tmp_path / "genai.yaml")]) == 0, capsys.readouterr().err
    assert "next:" in out and "pytest --genai-config genai.yaml" in out


def test_a_second_init_overwrites_nothing_and_says_what_it_skipped(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _init(tmp_path, capsys=capsys)
    (tmp_path / "genai.yaml").write_text("# mine\n", "utf-8")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = _init(tmp_path, "--starter", "local", capsys=capsys)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert "wrote" not in out
    for name in ("genai.yaml", "prompts/qa.yaml", "eval_sets/starter.jsonl", ".github/workflows/genai.yml",
                 "prompts.lock.json"):
        assert f"skipped  {name} (exists: left as it is)" in out


def test_an_existing_gitignore_is_kept_and_the_missing_lines_named(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".gitignore").write_text("mlflow.db\n", "utf-8")
    out = _init(tmp_path, capsys=capsys)
    assert (tmp_path / ".gitignore").read_text("utf-8") == "mlflow.db\n"
    assert "skipped  .gitignore (exists): add these lines to it: .pytest-genai/ mlruns/ mlartifacts/" in out


@pytest.mark.parametrize("starter", sorted(STARTERS))
def test_the_workflow_is_valid_pinned_and_zizmor_clean(starter: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _init(tmp_path, "--starter", starter, capsys=capsys)
    workflow = tmp_path / ".github" / "workflows" / "genai.yml"
    text = workflow.read_text("utf-8")
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses and all(PINNED.match(u) for u in uses), uses
    assert "pytest --genai-config genai.yaml" in text and "--genai-cache" in text
    assert ("OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}" in text) == (starter == "api")
    assert bool(re.search(r"^ +pytest-genai install-models$", text, re.M)) == (starter != "api")
    schema = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             str(workflow)], capture_output=True, text=True, timeout=300)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audit = subprocess.run([str(BIN / "zizmor"), "--offline", str(workflow)], capture_output=True, text=True,
                           timeout=300)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_the_api_starter_runs_against_a_server_then_replays_without_the_key(
        tmp_path: Path, stub: object, capsys: pytest.CaptureFixture[str]) -> None:
    """The fork-PR case: a run with the key fills the response cache; the same eval then replays with no
    OPENAI_API_KEY in the environment at all and makes no request."""
    _init(tmp_path, "--starter", "api", capsys=capsys)
    cfg_path = tmp_path / "genai.yaml"
    text = cfg_path.read_text("utf-8").replace("https://api.openai.com/v1", stub.base_url)  # type: ignore[attr-defined]
    cfg_path.write_text(text.replace('f1: ">= 0.5"', 'f1: ">= 0"'), "utf-8")  # the stub echoes the passage:
    cases = tmp_path / "eval_sets" / "starter.jsonl"                                # no gate or expect on quality
    rows = [json.loads(line) for line in cases.read_text("utf-8").splitlines()]
    cases.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "expect"}) + "\n" for r in rows), "utf-8")
    first = _pytest(tmp_path, "--genai-cache", "read-write", OPENAI_API_KEY=KEY)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "6 passed" in first.stdout
    calls = stub.request_count  # type: ignore[attr-defined]
    assert calls == 6
    replay = _pytest(tmp_path, "--genai-cache", "replay")
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-2000:]
    assert stub.request_count == calls  # type: ignore[attr-defined]
    assert KEY not in replay.stdout + first.stdout


@pytest.mark.slow  # real SmolLM2 (and MiniLM) generation in a fresh session
@pytest.mark.parametrize("starter", ["local", "rag"])
def test_an_offline_starter_passes_on_its_first_run(starter: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """init then pytest, in a fresh git repository: green on the first try, offline, and the tree stays clean."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    _init(tmp_path, "--starter", starter, capsys=capsys)
    done = _pytest(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "6 passed" in done.stdout and "gates passed: 4 of 4" in done.stdout
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert ".pytest-genai" not in status and "mlflow.db" not in status
