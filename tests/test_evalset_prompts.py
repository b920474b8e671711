"""Eval sets (line-numbered errors, hashing) and prompts (sandboxed rendering, hash, lock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_genai.evalset import EvalSetError, check_expect, load_eval_set
from pytest_genai.prompts import PromptError, load_prompt, read_lock, unbumped_edit_message, write_lock
from pytest_genai.seeding import case_seed


def write_jsonl(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "set.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


GOOD = json.dumps({"id": "a", "question": "q?", "answers": ["x"]})


def test_eval_set_loads_and_hashes_content(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path, [GOOD, json.dumps({"id": "b", "question": "q2?", "answers": [], "tags": ["t"], "expect": {"min_f1": 0.5}})])
    es = load_eval_set(p)
    assert [c.id for c in es.cases] == ["a", "b"] and es.cases[1].line == 2 and es.cases[1].tags == ("t",)
    h = es.sha256
    p.write_text(p.read_text().replace("q2?", "q3?"))
    assert load_eval_set(p).sha256 != h


def test_eval_set_errors_name_lines(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path, [
        GOOD,
        "{not json",
        json.dumps({"id": "a", "question": "dup", "answers": ["y"]}),
        json.dumps({"id": "c", "question": "q", "answer": ["typo"]}),
        json.dumps({"id": "d e", "question": "q", "answers": "x"}),
        json.dumps({"id": "f", "question": "q", "answers": ["x"], "expect": {"regex": "("}}),
    ])
    with pytest.raises(EvalSetError) as exc:
        load_eval_set(p)
    msg = str(exc.value)
    assert f"{p}:2: not valid JSON" in msg
    assert f"{p}:3: duplicate id 'a' (first on line 1)" in msg
    assert f"{p}:4: missing required field 'answers'" in msg and "unknown field(s) 'answer'" in msg
    assert f"{p}:5: 'id' must be" in msg and "'answers' must be a list of strings" in msg
    assert f"{p}:6: expect.regex is not a valid regular expression" in msg


def test_empty_eval_set_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match="no cases"):
        load_eval_set(write_jsonl(tmp_path, [""]))


def test_expect_assertions() -> None:
    assert check_expect({"contains": "paris"}, "It is Paris.", 0.5) == []
    fails = check_expect({"contains": ["x"], "not_contains": "Paris", "regex": r"^\d+$", "min_f1": 0.9}, "Paris", 0.5)
    assert len(fails) == 4 and "expected f1 >= 0.9 (got 0.500)" in fails


def prompt_file(tmp_path: Path, body: str) -> Path:
    d = tmp_path / "prompts"
    d.mkdir(exist_ok=True)
    (d / "qa.yaml").write_text(body)
    return d


def test_prompt_renders_chat_and_strict_undefined(tmp_path: Path) -> None:
    d = prompt_file(tmp_path, "id: qa\nversion: 2\ntemplate:\n  - {role: system, content: Be brief.}\n  - {role: user, content: '{{ context }} | {{ question }}'}\n")
    p = load_prompt(d, "qa", 2)
    assert p.render({"context": "C", "question": "Q"}) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "C | Q"}]
    with pytest.raises(PromptError, match="'question' is undefined"):
        p.render({"context": "C"})


def test_prompt_sandbox_blocks_attribute_escape(tmp_path: Path) -> None:
    d = prompt_file(tmp_path, "id: qa\nversion: 1\ntemplate: \"{{ question.__class__.__mro__[1].__subclasses__() }}\"\n")
    with pytest.raises(PromptError, match="failed to render"):
        load_prompt(d, "qa", 1).render({"question": "x"})


def test_prompt_version_mismatch_and_missing(tmp_path: Path) -> None:
    d = prompt_file(tmp_path, "id: qa\nversion: 1\ntemplate: hi\n")
    with pytest.raises(PromptError, match="holds version 1"):
        load_prompt(d, "qa", 2)
    with pytest.raises(PromptError, match="available: qa"):
        load_prompt(d, "other", 1)


def test_prompt_hash_ignores_yaml_layout_and_lock_catches_unbumped_edit(tmp_path: Path) -> None:
    d = prompt_file(tmp_path, "id: qa\nversion: 1\ntemplate: 'Q: {{ question }}'\n")
    h1 = load_prompt(d, "qa", 1).hash
    d = prompt_file(tmp_path, "# reformatted\nversion: 1\nid: qa\ntemplate: >-\n  Q: {{ question }}\n")
    assert load_prompt(d, "qa", 1).hash == h1
    lock = tmp_path / "prompts.lock.json"
    write_lock(lock, [load_prompt(d, "qa", 1)])
    assert read_lock(lock) == {"qa@1": h1}
    d = prompt_file(tmp_path, "id: qa\nversion: 1\ntemplate: 'Question: {{ question }}'\n")
    edited = load_prompt(d, "qa", 1)
    msg = unbumped_edit_message(edited, read_lock(lock)["qa@1"], "the prompt lock")
    assert msg is not None and "edited without a version bump" in msg and "qa@1" in msg


def test_case_seed_depends_only_on_seed_and_id() -> None:
    assert case_seed(1, "a") == case_seed(1, "a")
    assert len({case_seed(1, "a"), case_seed(2, "a"), case_seed(1, "b")}) == 3
    assert 0 <= case_seed(123, "x") < 2**31


def test_line_separator_inside_json_string_is_not_a_line_break(tmp_path: Path) -> None:
    p = tmp_path / "set.jsonl"
    p.write_text(json.dumps({"id": "a", "question": "x\u2028y", "answers": ["z"]}, ensure_ascii=False) + "\n" + GOOD.replace('"a"', '"b"') + "\n", encoding="utf-8")
    es = load_eval_set(p)
    assert [c.line for c in es.cases] == [1, 2] and es.cases[0].question == "x\u2028y"


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "set.jsonl"
    p.write_bytes(GOOD.encode() + b"\n" + b'{"id": "b", "question": "\xff", "answers": []}\n')
    with pytest.raises(EvalSetError, match=r"set.jsonl:2: not valid UTF-8"):
        load_eval_set(p)


@pytest.mark.parametrize(("content", "message"), [
    ("", r"qa\.yaml:7: template\[1\] \(user\) has no content \(`content:` is empty"),
    (' ""', r"qa\.yaml:7: template\[1\] \(user\) has empty content"),
    ("  '   '", r"qa\.yaml:7: template\[1\] \(user\) has empty content"),
    (" yes", r"qa\.yaml:7: template\[1\] \(user\) content must be text, got bool True \(quote it"),
    (" [a, b]", r"qa\.yaml:7: template\[1\] \(user\) content must be text, got list"),
])
def test_a_chat_message_needs_text_content(tmp_path: Path, content: str, message: str) -> None:
    # line 7 holds the second message: the error points there (blank lines and comments count)
    d = prompt_file(tmp_path, "id: qa\nversion: 1\ntemplate:\n  - role: system\n    content: Be brief.\n\n"
                              "  - role: user\n    content:" + content + "\n")
    with pytest.raises(PromptError, match=message):
        load_prompt(d, "qa", 1)


def test_an_empty_template_is_refused(tmp_path: Path) -> None:
    for body, message in (("template: ''", "template is empty"), ("template: []", "empty list of chat messages")):
        d = prompt_file(tmp_path, f"id: qa\nversion: 1\n{body}\n")
        with pytest.raises(PromptError, match=message):
            load_prompt(d, "qa", 1)


def test_no_message_is_ever_rendered_as_the_string_none(tmp_path: Path) -> None:
    d = prompt_file(tmp_path, "id: qa\nversion: 1\ntemplate:\n  - {role: system, content: }\n  - {role: user, content: '{{ question }}'}\n")
    with pytest.raises(PromptError, match=r"qa\.yaml:4: template\[0\] \(system\) has no content"):
        load_prompt(d, "qa", 1)


def test_probe_names_the_undefined_variable_what_is_available_and_a_suggestion(tmp_path: Path) -> None:
    d = prompt_file(tmp_path, "id: qa\nversion: 3\ntemplate:\n  - {role: system, content: Be brief.}\n"
                              "  - {role: user, content: '{{ context }} | {{ questin }}'}\n")
    p = load_prompt(d, "qa", 3)
    assert p.variables() == frozenset({"context", "questin"})
    variables = {"question": "Q", "context": "C", "case": object()}
    with pytest.raises(PromptError) as info:
        p.probe(variables)
    msg = str(info.value)
    assert msg == (f"prompt qa@3 ({d / 'qa.yaml'}): template variable 'questin' is undefined in template[1]; "
                   "did you mean 'question'? (variables available: case, context, question)")
    with pytest.raises(PromptError, match="did you mean 'question'"):
        p.render(variables)  # a case's render says the same
    assert p.probe({"questin": "Q", "context": "C"}) is None


def test_probe_without_a_close_name_and_on_attributes(tmp_path: Path) -> None:
    d = prompt_file(tmp_path, "id: qa\nversion: 1\ntemplate: '{{ passage }} {{ case.nonexistent }}'\n")
    p = load_prompt(d, "qa", 1)
    assert p.variables() == frozenset({"passage", "case"})
    with pytest.raises(PromptError) as info:
        p.probe({"question": "Q", "case": {"id": "a"}})
    assert str(info.value).endswith("template variable 'passage' is undefined (variables available: case, question)")
    assert "did you mean" not in str(info.value)
    with pytest.raises(PromptError, match=r"failed to render: 'dict object' has no attribute 'nonexistent' "
                                          r"\(variables available: case, passage\)"):
        p.probe({"passage": "P", "case": {"id": "a"}})


def test_variables_include_conditional_ones_and_skip_loop_locals(tmp_path: Path) -> None:
    d = prompt_file(tmp_path, "id: qa\nversion: 1\ntemplate: \"{% if context %}{{ context }}{% endif %}"
                              "{% for d in docs %}{{ d }}{% endfor %}{% set x = 1 %}{{ x }} {{ question | upper }}\"\n")
    p = load_prompt(d, "qa", 1)
    assert p.variables() == frozenset({"context", "docs", "question"})
    assert p.render({"context": "", "docs": ["a", "b"], "question": "q"}) == [{"role": "user", "content": "ab1 Q"}]
