"""Config: schema validation, did-you-mean, file:line in errors, ${ENV} secrets, config_hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_genai.config import ConfigError, load_config

BASE = """\
version: 1
seed: 3
pipeline: builtin:llm
llm:
  temperature: 0.0
  max_tokens: 16
prompt:
  id: qa
  version: 1
eval:
  set: evals/qa.jsonl
gates:
  f1: ">= 0.5"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "genai.yaml"
    p.write_text(text)
    return p


def errors(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), environ=environ or {})
    return str(exc.value)


def test_valid_config_fills_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE), environ={})
    assert cfg.get("llm.provider") == "hf_local"
    assert cfg.get("tracking.experiment") == "pytest-genai"
    assert cfg.get("llm.pricing.input_per_1k_tokens") == 0.0
    assert cfg.resolve_path("eval.set") == tmp_path / "evals" / "qa.jsonl"
    assert cfg.params()["llm.max_tokens"] == "16"
    assert cfg.params()["gates.f1"] == ">= 0.5"


@pytest.mark.parametrize(("line", "typo", "suggestion"), [
    ("topK: 4", "topK", "rag.retriever_k"),
    ("temp: 0.2", "temp", "llm.temperature"),
    ("top_k: 4", "top_k", "rag.retriever_k"),
])
def test_top_level_synonyms_suggest_canonical(tmp_path: Path, line: str, typo: str, suggestion: str) -> None:
    msg = errors(tmp_path, BASE + line + "\n")
    assert f"genai.yaml:14: {typo}: unknown key '{typo}' — did you mean '{suggestion}'?" in msg


def test_nested_typos_name_line_and_key(tmp_path: Path) -> None:
    text = BASE.replace("  temperature: 0.0", "  temp: 0.0").replace("  max_tokens: 16", "  maxTokens: 16")
    msg = errors(tmp_path, text)
    assert "genai.yaml:5: llm.temp: unknown key 'llm.temp' — did you mean 'llm.temperature'?" in msg
    assert "genai.yaml:6: llm.maxTokens: unknown key 'llm.maxTokens' — did you mean 'llm.max_tokens'?" in msg


def test_all_problems_reported_at_once_in_line_order(tmp_path: Path) -> None:
    text = BASE.replace("seed: 3", "seed: -1").replace('f1: ">= 0.5"', 'f1: "at least half"\n  F1: ">= 1"')
    msg = errors(tmp_path, text)
    assert "3 problem(s)" in msg
    assert msg.index("genai.yaml:2: seed") < msg.index("genai.yaml:13: gates.f1") < msg.index("genai.yaml:14: gates.F1")
    assert "write it like '>= 0.6'" in msg
    assert "did you mean 'gates.f1'?" in msg


def test_missing_required_section_and_bad_types(tmp_path: Path) -> None:
    text = BASE.replace("eval:\n  set: evals/qa.jsonl\n", "").replace("max_tokens: 16", "max_tokens: lots")
    msg = errors(tmp_path, text)
    assert "genai.yaml:1: eval: 'eval' is a required property, missing from the top level of the file" in msg
    assert "genai.yaml:6: llm.max_tokens: 'lots' is not of type 'integer'" in msg


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    msg = errors(tmp_path, BASE + "gates: [unclosed\n")
    assert "genai.yaml:" in msg and "not valid YAML" in msg


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    msg = errors(tmp_path, BASE + "seed: 4\n")
    assert "genai.yaml:14: seed: key given twice" in msg


def test_secret_from_env_is_resolved_but_not_exposed(tmp_path: Path) -> None:
    text = BASE.replace("llm:\n", "llm:\n  api_key: ${MY_KEY}\n")
    cfg = load_config(write(tmp_path, text), environ={"MY_KEY": "sk-secret-123"})
    assert cfg.get("llm.api_key") == "sk-secret-123"
    assert "llm.api_key" not in cfg.params()
    assert "sk-secret-123" not in repr(cfg) and "sk-secret-123" not in str(cfg.public)
    other = load_config(write(tmp_path, text), environ={"MY_KEY": "sk-another"})
    assert other.hash == cfg.hash  # the value is never hashed in clear


def test_literal_api_key_rejected_and_missing_env_named(tmp_path: Path) -> None:
    msg = errors(tmp_path, BASE.replace("llm:\n", "llm:\n  api_key: sk-live-abc\n"))
    assert "llm.api_key: must be an environment reference" in msg and "sk-live-abc" not in msg
    # an unset key is no error at load (a replay never needs it), but reading it is, naming file, line and variable
    cfg = load_config(write(tmp_path, BASE.replace("llm:\n", "llm:\n  api_key: ${NOPE_KEY}\n")), environ={})
    with pytest.raises(ConfigError) as exc:
        cfg.get("llm.api_key")
    assert "genai.yaml:5: llm.api_key: environment variable NOPE_KEY is not set" in str(exc.value)
    assert "llm.api_key" not in cfg.params()
    # outside llm (read at load), an unset reference is still an error at once
    msg = errors(tmp_path, BASE + "safety:\n  redact_key: ${NOPE_KEY}\n")
    assert "safety.redact_key: environment variable NOPE_KEY is not set" in msg


def test_config_hash_changes_with_knobs_not_with_tracking(tmp_path: Path) -> None:
    h = load_config(write(tmp_path, BASE), environ={}).hash
    assert load_config(write(tmp_path, BASE + "tracking:\n  experiment: other\n"), environ={}).hash == h
    assert load_config(write(tmp_path, BASE.replace("seed: 3", "seed: 4")), environ={}).hash != h
    # defaults are explicit: writing the default value does not change the identity
    assert load_config(write(tmp_path, BASE.replace("llm:\n", "llm:\n  provider: hf_local\n")), environ={}).hash == h
