"""The `pytest-genai` command: validate, lock-prompts (refuses to bless an unbumped edit), upload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_genai.cli import main


def make(tmp_path: Path, template: str = "Q: {{ question }}") -> Path:
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "prompts" / "qa.yaml").write_text(f"id: qa\nversion: 1\ntemplate: '{template}'\n")
    (tmp_path / "qa.jsonl").write_text(json.dumps({"id": "a", "question": "q", "answers": ["x"]}) + "\n")
    cfg = tmp_path / "genai.yaml"
    cfg.write_text("version: 1\npipeline: builtin:llm\nprompt:\n  id: qa\n  version: 1\neval:\n  set: qa.jsonl\n")
    return cfg


def test_validate_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make(tmp_path)
    assert main(["validate", str(cfg)]) == 0
    assert "1 cases" in capsys.readouterr().out
    cfg.write_text(cfg.read_text() + "temp: 1\n")
    assert main(["validate", str(cfg)]) == 2
    assert "did you mean 'llm.temperature'?" in capsys.readouterr().err


def test_validate_names_missing_eval_set_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make(tmp_path)
    (tmp_path / "qa.jsonl").unlink()
    assert main(["validate", str(cfg)]) == 2
    assert "genai.yaml:7: eval.set: the eval set" in capsys.readouterr().err


def test_lock_prompts_refuses_an_unbumped_edit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make(tmp_path)
    assert main(["lock-prompts", str(cfg)]) == 0
    lock = json.loads((tmp_path / "prompts.lock.json").read_text())
    make(tmp_path, template="Question: {{ question }}")
    assert main(["lock-prompts", str(cfg)]) == 1
    assert "refusing to re-lock" in capsys.readouterr().err
    assert json.loads((tmp_path / "prompts.lock.json").read_text()) == lock
    assert main(["validate", str(cfg)]) == 2  # the session setup catches it too
    assert "edited without a version bump" in capsys.readouterr().err
    assert main(["lock-prompts", str(cfg), "--force"]) == 0


def test_upload_rejects_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upload", str(tmp_path)]) == 2
    assert "not a pytest-genai run folder" in capsys.readouterr().err


def test_validate_checks_the_tokenizer_the_dry_run_counts_with(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make(tmp_path)
    base = cfg.read_text()
    cfg.write_text(base + "llm:\n  tokenizer: tokenizers/missing\n")
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "genai.yaml:" in err and "llm.tokenizer: 'tokenizers/missing' is neither model, approx, words nor a tokenizer " \
                                    "folder" in err
    cfg.write_text(base + "llm:\n  provider: openai_compatible\n  model_id: m\n  base_url: http://127.0.0.1:9\n"
                          "  tokenizer: model\n")
    assert main(["validate", str(cfg)]) == 2 and "only for llm.provider hf_local" in capsys.readouterr().err
    (tmp_path / "tokenizers" / "mine").mkdir(parents=True)
    cfg.write_text(base + "llm:\n  tokenizer: tokenizers/mine\n")
    assert main(["validate", str(cfg)]) == 0
