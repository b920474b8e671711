"""Input limits: a YAML alias bomb ("billion laughs"), nesting 10,000 deep (config, prompt file, prompt lock,
eval-set line) and files or lines over the size bounds are each one clear error naming the file and the line, in
the reader's own error type, found at once (was: a MemoryError after 10+ s, an INTERNALERROR RecursionError). Each
check's time is printed and recorded as a property (not asserted: timed assertions are flaky)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import Project
from pytest_genai.config import ConfigError, load_config
from pytest_genai.config.yaml_lines import load_yaml_with_lines
from pytest_genai.evalset import EvalSetError, load_eval_set
from pytest_genai.input_limits import (MAX_DEPTH, MAX_FILE_BYTES, MAX_LINE_CHARS, MAX_NODES, InputLimitError,
                                       check_json, check_yaml)
from pytest_genai.prompts import PromptError, load_prompt, read_lock

DEEP = 10_000
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
ALIAS_BOMB = f"YAML aliases expand the document beyond {MAX_NODES:,} nodes"


def billion_laughs(levels: int = 9, width: int = 9) -> list[str]:
    """`lol0: &lol0 [lol, ...]`, then each level `width` aliases of the one before: width**levels nodes."""
    out = [f"lol0: &lol0 [{', '.join(['lol'] * width)}]"]
    out += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return out


def timed(request: pytest.FixtureRequest, check: Callable[[], Any], expected: type[Exception]) -> Exception:
    """Run `check`, which must raise `expected`; print and record how long it took."""
    start = time.perf_counter()
    with pytest.raises(expected) as info:
        check()
    seconds = time.perf_counter() - start
    print(f"{request.node.name}: {seconds:.4f} s")
    request.node.user_properties.append(("check_seconds", round(seconds, 4)))
    return info.value


def test_a_billion_laughs_config_is_an_error_naming_file_and_line(tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    path = tmp_path / "genai.yaml"
    path.write_text("version: 1\n" + "\n".join(billion_laughs()) + "\n")
    err = timed(request, lambda: load_config(path), ConfigError)
    # lol6 (line 8) holds 9**7 = 4.8M nodes expanded: the bound is crossed there
    assert len(err.problems) == 1 and f"{path}:8: {ALIAS_BOMB}" in str(err)


@pytest.mark.parametrize("style, body, line", [
    ("flow", "x: " + "[" * DEEP + "]" * DEEP + "\n", 1),
    ("block", "x:\n  " + "- " * DEEP + "1\n", 2),
    ("flow-mappings", "x:\n  y: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n", 2),
])
def test_a_config_nested_10000_deep_is_an_error_naming_file_and_line(tmp_path: Path, request: pytest.FixtureRequest,
                                                                     style: str, body: str, line: int) -> None:
    path = tmp_path / "genai.yaml"
    path.write_text(body)
    err = timed(request, lambda: load_config(path), ConfigError)
    assert str(err).splitlines()[1].strip().startswith(f"{path}:{line}: {TOO_DEEP}"), str(err)


def test_a_config_over_the_size_bound_is_an_error_naming_file_and_size(tmp_path: Path,
                                                                       request: pytest.FixtureRequest) -> None:
    path = tmp_path / "genai.yaml"
    path.write_text("version: 1\n" + "#" * MAX_FILE_BYTES + "\n")
    size = path.stat().st_size
    err = timed(request, lambda: load_config(path), ConfigError)
    assert f"{path}: the file is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes" in str(err)


def test_a_prompt_file_nested_10000_deep_is_an_error_naming_file_and_line(tmp_path: Path,
                                                                          request: pytest.FixtureRequest) -> None:
    (tmp_path / "qa.yaml").write_text("id: qa\nversion: 1\ntemplate: " + "[" * DEEP + "]" * DEEP + "\n")
    err = timed(request, lambda: load_prompt(tmp_path, "qa", 1), PromptError)
    assert str(err) == f"{tmp_path / 'qa.yaml'}:3: {TOO_DEEP} (mappings and lists inside each other)"


def test_a_billion_laughs_prompt_file_is_an_error_naming_file_and_line(tmp_path: Path,
                                                                       request: pytest.FixtureRequest) -> None:
    (tmp_path / "qa.yaml").write_text("id: qa\nversion: 1\nnote:\n" + "".join(f"  {s}\n" for s in billion_laughs())
                                      + "template: hi\n")
    err = timed(request, lambda: load_prompt(tmp_path, "qa", 1), PromptError)
    assert str(err).startswith(f"{tmp_path / 'qa.yaml'}:") and ALIAS_BOMB in str(err)


def test_a_prompt_lock_nested_too_deep_is_an_error_naming_file_and_line(tmp_path: Path,
                                                                        request: pytest.FixtureRequest) -> None:
    path = tmp_path / "prompts.lock.json"
    path.write_text('{\n  "qa@1": "abc",\n  "x": ' + "[" * DEEP + "]" * DEEP + "\n}\n")
    err = timed(request, lambda: read_lock(path), PromptError)
    assert str(err).startswith(f"{path}:3: {TOO_DEEP}")


def test_an_eval_set_line_nested_10000_deep_is_an_error_naming_file_and_line(tmp_path: Path,
                                                                             request: pytest.FixtureRequest) -> None:
    path = tmp_path / "qa.jsonl"
    ok = json.dumps({"id": "a", "question": "q?", "answers": ["x"]})
    deep = '{"id": "b", "question": "q?", "answers": ["x"], "expect": {"contains": ' + "[" * DEEP + "]" * DEEP + "}}"
    path.write_text(ok + "\n" + deep + "\n")
    err = timed(request, lambda: load_eval_set(path), EvalSetError)
    assert err.problems == [f"{path}:2: {TOO_DEEP} (objects and arrays inside each other)"]


def test_an_eval_set_line_over_the_size_bound_is_an_error_naming_file_and_line(tmp_path: Path,
                                                                               request: pytest.FixtureRequest) -> None:
    path = tmp_path / "qa.jsonl"
    big = json.dumps({"id": "b", "question": "q" * MAX_LINE_CHARS, "answers": ["x"]})
    path.write_text(json.dumps({"id": "a", "question": "q?", "answers": ["x"]}) + "\n" + big + "\n")
    err = timed(request, lambda: load_eval_set(path), EvalSetError)
    assert err.problems == [f"{path}:2: the line is {len(big):,} characters long, over the limit of {MAX_LINE_CHARS:,}"]


@pytest.mark.skipif(not 0 < sys.get_int_max_str_digits() < 5000, reason="Python's digit limit is off or higher")
def test_a_number_past_the_digit_limit_is_not_valid_json_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "a", "question": "q?", "answers": ["x"], "expect": {"min_f1": ' + "1" * 5000 + "}}\n")
    with pytest.raises(EvalSetError) as info:
        load_eval_set(path)
    assert info.value.problems[0].startswith(f"{path}:1: not valid JSON (Exceeds the limit")
    lock = tmp_path / "prompts.lock.json"
    lock.write_text('{"qa@1": ' + "1" * 5000 + "}")
    with pytest.raises(PromptError, match="not valid JSON"):
        read_lock(lock)


def test_the_bounds_are_exact_and_brackets_in_strings_do_not_count(tmp_path: Path) -> None:
    check_yaml("x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1), "a.yaml")  # the top mapping is one level
    with pytest.raises(InputLimitError, match=TOO_DEEP):
        check_yaml("x: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH, "a.yaml")
    check_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "a.json")
    with pytest.raises(InputLimitError, match=TOO_DEEP):
        check_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "a.json")
    check_json(json.dumps({"q": "[{" * 1000, "a": ["\\\"[" * 100]}), "a.json")
    check_yaml("x: 'unclosed\n", "a.yaml")  # not YAML: the loader's own error says where
    check_json('{"q": "unclosed [[[[' + "[" * 100, "a.json")


def test_a_config_with_a_few_anchors_and_aliases_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("x: &a {k: 1}\ny: *a\nz: [*a, *a]\n")
    data, lines = load_yaml_with_lines(path)
    assert data == {"x": {"k": 1}, "y": {"k": 1}, "z": [{"k": 1}, {"k": 1}]} and lines[("y",)] == 2
    (tmp_path / "qa.jsonl").write_text(json.dumps({"id": "a", "question": "q?", "answers": ["x"]}) + "\n")
    config = tmp_path / "genai.yaml"
    config.write_text("version: 1\nseed: &seed 7\npipeline: genai_user_pipeline:factory\neval: {set: qa.jsonl}\n"
                      "llm: {model_id: fixed, max_tokens: *seed, pricing: &price {input_per_1k_tokens: 1.0}}\n")
    loaded = load_config(config)
    assert loaded.get("llm.max_tokens") == 7 and loaded.get("seed") == 7


def test_a_billion_laughs_genai_yaml_is_a_usage_error_not_an_internalerror(project: Project) -> None:
    path = project.write_config()
    before = path.read_text().count("\n")
    path.write_text(path.read_text() + "\n".join(billion_laughs()) + "\n")
    start = time.perf_counter()
    result = project.run("--genai-config", "genai.yaml")
    print(f"pytest --genai-config genai.yaml (billion laughs): {time.perf_counter() - start:.3f} s")
    out = result.stdout.str() + "\n" + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"genai.yaml:{before + 7}: {ALIAS_BOMB}" in out  # the line of lol6 (see the test above)
    assert "INTERNALERROR" not in out and "Traceback" not in out and "MemoryError" not in out


def test_an_eval_set_line_nested_10000_deep_is_a_usage_error_not_an_internalerror(project: Project) -> None:
    project.write_config()
    path = project.path / "evals" / "qa.jsonl"
    path.write_text(path.read_text() + '{"id": "deep", "question": "q?", "answers": ' + "[" * DEEP + "]" * DEEP + "}\n")
    result = project.run("--genai-config", "genai.yaml")
    out = result.stdout.str() + "\n" + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"qa.jsonl:5: {TOO_DEEP}" in out
    assert "INTERNALERROR" not in out and "RecursionError" not in out


def test_one_big_string_aliased_many_times_is_refused_by_its_expanded_size(tmp_path: Path) -> None:
    """Few nodes, much text: a 200 KB string aliased 200 times expands to 40 MB (a reviewer's 4 MB version ran for
    10 minutes and wrote an 804 MB run.json)."""
    from pytest_genai.input_limits import InputLimitError, check_yaml

    text = f"s: &s \"{'y' * 200_000}\"\nl: [{', '.join(['*s'] * 200)}]\n"
    with pytest.raises(InputLimitError, match="beyond 20,000,000 characters of text"):
        check_yaml(text, tmp_path / "genai.yaml")
    check_yaml(f"s: &s \"{'y' * 200_000}\"\nl: [*s, *s]\n", tmp_path / "genai.yaml")  # a few aliases are fine
