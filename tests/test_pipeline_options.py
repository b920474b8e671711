"""A custom pipeline's own settings: `pipeline.options`, checked against the JSON Schema its factory declares
(`options_schema`, set by `@pipeline_options(schema)` or as a class attribute). Checked at load with every other
config problem, as `file:line: pipeline.options.<key>: message` (an unknown key with a did-you-mean among the
schema's `properties`); the built-ins take no options; a factory that declares no schema gets them unchecked; the
build checks them again before the factory is called (a required option and no `options` at all)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from pytest_genai.config import ConfigError, load_config
from pytest_genai.context import PipelineContext
from pytest_genai.pipelines import NO_OPTIONS, build_pipeline, options_schema_of, pipeline_options

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["greeting"],
    "properties": {
        "greeting": {"type": "string"},
        "max_hops": {"type": "integer", "minimum": 1},
        "retry": {"type": "object", "additionalProperties": False, "properties": {"attempts": {"type": "integer"}}},
    },
}

DECLARED = f'''
from pytest_genai.pipelines import pipeline_options

CALLS = []

@pipeline_options({SCHEMA!r})
def build(ctx):
    CALLS.append(dict(ctx.options))
    return lambda case: " ".join([ctx.options["greeting"]] * ctx.options.get("max_hops", 1))
'''

UNDECLARED = '''
def build(ctx):
    return lambda case: ctx.options["greeting"]
'''

ON_THE_CLASS = f'''
class Hops:
    options_schema = {SCHEMA!r}

    def __init__(self, ctx):
        self.greeting = ctx.options["greeting"]

    def __call__(self, case):
        return self.greeting
'''

BAD_SCHEMA = '''
from pytest_genai.pipelines import pipeline_options

@pipeline_options({"type": "object", "properties": {"greeting": {"type": "text"}}})
def build(ctx):
    return lambda case: "x"
'''


@pytest.fixture
def module(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Writes a pipeline module beside the config under a name of its own; forgotten after the test."""
    names: list[str] = []

    def write(source: str) -> str:
        name = f"opts_{request.node.name.split('[')[0][5:40]}_{len(names)}"
        (tmp_path / f"{name}.py").write_text(source, "utf-8")
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def write_config(folder: Path, pipeline: Any, **sections: Any) -> Path:
    (folder / "evals").mkdir(exist_ok=True)
    (folder / "evals" / "qa.jsonl").write_text(json.dumps({"id": "a", "question": "q", "answers": ["x"]}) + "\n")
    path = folder / "genai.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "pipeline": pipeline, "eval": {"set": "evals/qa.jsonl"}, **sections},
                                   sort_keys=False))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    return [p.render(path) for p in info.value.problems]


def context(config: Any) -> PipelineContext:
    return PipelineContext(config, prompt=None, runtime=None, sanitizer=None)


def line(path: Path, text: str) -> int:
    """The 1-based line of the first line of `path` that holds `text`."""
    return next(i for i, row in enumerate(path.read_text().splitlines(), 1) if text in row)


# -- at load: the messages ----------------------------------------------------------------------------------------

def test_a_misspelt_option_names_file_line_key_and_the_option_it_meant(tmp_path: Path, module: Any) -> None:
    name = module(DECLARED)
    path = write_config(tmp_path, {"factory": f"{name}:build", "options": {"greetng": "Bonjour"}})
    assert problems(path) == [
        f"{path}:{line(path, 'options:')}: pipeline.options: 'greeting' is a required property",
        f"{path}:{line(path, 'greetng:')}: pipeline.options.greetng: unknown key 'pipeline.options.greetng' — did you "
        f"mean 'pipeline.options.greeting'? (the options of '{name}:build': greeting, max_hops, retry)",
    ]


def test_a_wrong_type_names_the_option_and_its_line(tmp_path: Path, module: Any) -> None:
    name = module(DECLARED)
    path = write_config(tmp_path, {"factory": f"{name}:build", "options": {"greeting": "Hi", "max_hops": "two"}})
    assert problems(path) == [f"{path}:{line(path, 'max_hops:')}: pipeline.options.max_hops: 'two' is not of type 'integer'"]
    path = write_config(tmp_path, {"factory": f"{name}:build", "options": {"greeting": "Hi", "max_hops": 0}})
    assert problems(path) == [f"{path}:{line(path, 'max_hops:')}: pipeline.options.max_hops: 0 is less than the minimum of 1"]


def test_nested_options_and_camel_case_get_their_own_suggestions(tmp_path: Path, module: Any) -> None:
    name = module(DECLARED)
    path = write_config(tmp_path, {"factory": f"{name}:build",
                                   "options": {"greeting": "Hi", "maxHops": 2, "retry": {"attempst": 3}}})
    assert problems(path) == [
        f"{path}:{line(path, 'maxHops:')}: pipeline.options.maxHops: unknown key 'pipeline.options.maxHops' — did you "
        f"mean 'pipeline.options.max_hops'? (the options of '{name}:build': greeting, max_hops, retry)",
        f"{path}:{line(path, 'attempst:')}: pipeline.options.retry.attempst: unknown key 'pipeline.options.retry.attempst'"
        " — did you mean 'pipeline.options.retry.attempts'? (known under pipeline.options.retry: attempts)",
    ]


def test_option_problems_come_with_every_other_config_problem_in_line_order(tmp_path: Path, module: Any) -> None:
    name = module(DECLARED)
    path = write_config(tmp_path, {"factory": f"{name}:build", "options": {"greeting": 3, "max_hop": 2}},
                        llm={"temprature": 0.0})
    assert problems(path) == [
        f"{path}:{line(path, 'greeting:')}: pipeline.options.greeting: 3 is not of type 'string'",
        f"{path}:{line(path, 'max_hop:')}: pipeline.options.max_hop: unknown key 'pipeline.options.max_hop' — did you "
        f"mean 'pipeline.options.max_hops'? (the options of '{name}:build': greeting, max_hops, retry)",
        f"{path}:{line(path, 'temprature:')}: llm.temprature: unknown key 'llm.temprature' — did you mean 'llm.temperature'?",
    ]


def test_a_builtin_takes_no_options_and_a_setting_of_the_config_is_suggested(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    path = write_config(tmp_path, {"factory": "builtin:llm", "options": {"temperature": 0.2, "greeting": "Hi"}},
                        prompt={"id": "qa", "version": 1})
    assert problems(path) == [
        f"{path}:{line(path, 'temperature:')}: pipeline.options.temperature: unknown key 'pipeline.options.temperature' — "
        "did you mean 'llm.temperature'? ('builtin:llm' takes no options)",
        f"{path}:{line(path, 'greeting:')}: pipeline.options.greeting: unknown key 'pipeline.options.greeting' "
        "('builtin:llm' takes no options)",
    ]
    assert load_config(write_config(tmp_path, {"factory": "builtin:llm", "options": {}}), environ={}).pipeline.options == {}


def test_valid_options_load_read_only_and_a_class_may_declare_the_schema(
        tmp_path: Path, module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    name = module(ON_THE_CLASS)
    config = load_config(write_config(tmp_path, {"factory": f"{name}:Hops",
                                                 "options": {"greeting": "Hi", "retry": {"attempts": 2}}}), environ={})
    assert config.pipeline.options["retry"]["attempts"] == 2
    with pytest.raises(TypeError):
        config.pipeline.options["greeting"] = "Yo"  # type: ignore[index]
    monkeypatch.syspath_prepend(str(tmp_path))
    assert build_pipeline(context(config))(None) == "Hi"
    path = write_config(tmp_path, {"factory": f"{name}:Hops", "options": {"greting": "Hi"}})
    assert [p.split(": ", 2)[1] for p in problems(path)] == ["pipeline.options", "pipeline.options.greting"]


def test_a_factory_without_a_schema_gets_its_options_unchecked(tmp_path: Path, module: Any) -> None:
    name = module(UNDECLARED)
    config = load_config(write_config(tmp_path, {"factory": f"{name}:build", "options": {"anything": [1, {"at": "all"}]}}),
                         environ={})
    assert config.pipeline.options["anything"][1]["at"] == "all"


def test_a_schema_that_is_not_json_schema_is_the_factorys_problem(tmp_path: Path, module: Any) -> None:
    name = module(BAD_SCHEMA)
    path = write_config(tmp_path, {"factory": f"{name}:build", "options": {"greeting": "Hi"}})
    [message] = problems(path)
    assert message.startswith(f"{path}:{line(path, 'factory:')}: pipeline.factory: the options_schema of '{name}:build' "
                              "is not a valid JSON Schema: ")
    assert "'text' is not valid under any of the given schemas" in message


def test_a_factory_that_does_not_load_is_left_to_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its options cannot be checked at load; the build reports the import problem, with nothing invented here."""
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(write_config(tmp_path, {"factory": "no_such_module_here:build", "options": {"x": 1}}), environ={})
    with pytest.raises(ConfigError, match="cannot load the factory 'no_such_module_here:build': ModuleNotFoundError"):
        build_pipeline(context(config))


def test_the_validate_command_reports_the_same_problems(tmp_path: Path, module: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_genai.cli import main

    name = module(DECLARED)
    path = write_config(tmp_path, {"factory": f"{name}:build", "options": {"greeting": "Hi", "max_hosp": 2}})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert (f"{path}:{line(path, 'max_hosp:')}: pipeline.options.max_hosp: unknown key 'pipeline.options.max_hosp' — "
            "did you mean 'pipeline.options.max_hops'?") in err
    write_config(tmp_path, {"factory": f"{name}:build", "options": {"greeting": "Hi", "max_hops": 2}})
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


# -- at build: before the factory is called -----------------------------------------------------------------------

def test_a_required_option_with_no_options_written_stops_the_build_before_the_factory_runs(
        tmp_path: Path, module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    name = module(DECLARED)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(write_config(tmp_path, f"{name}:build"), environ={})  # the shorthand: nothing to check at load
    with pytest.raises(ConfigError) as info:
        build_pipeline(context(config))
    assert [p.render(config.path) for p in info.value.problems] == [
        f"{config.path}:{line(config.path, 'pipeline:')}: pipeline.options: 'greeting' is a required property"]
    assert sys.modules[name].CALLS == []  # the factory never ran
    config = load_config(write_config(tmp_path, {"factory": f"{name}:build", "options": {"greeting": "Hi", "max_hops": 2}}),
                         environ={})
    assert build_pipeline(context(config))(None) == "Hi Hi"
    assert sys.modules[name].CALLS == [{"greeting": "Hi", "max_hops": 2}]


def test_how_a_factory_declares_its_schema() -> None:
    @pipeline_options(SCHEMA)
    def function(ctx: Any) -> Any: ...

    class Declared:
        options_schema = NO_OPTIONS

        @classmethod
        def from_context(cls, ctx: Any) -> Any: ...

        @classmethod
        @pipeline_options({"type": "object"})
        def other(cls, ctx: Any) -> Any: ...

    assert options_schema_of(function) == SCHEMA
    assert options_schema_of(Declared) is options_schema_of(Declared.from_context) is NO_OPTIONS
    assert options_schema_of(Declared.other) == {"type": "object"}  # the method's own wins over its class's
    assert options_schema_of(lambda ctx: None) is None  # declares nothing: unchecked
    assert options_schema_of(lambda ctx: None, "builtin:rag") == NO_OPTIONS  # the built-ins take none


# -- end to end: a session ----------------------------------------------------------------------------------------

E2E_PIPELINE = DECLARED.replace("CALLS.append(dict(ctx.options))",
                                "open('factory-called', 'w').write(json.dumps(dict(ctx.options)))")


def test_a_session_hands_the_validated_options_to_the_pipeline_and_a_typo_stops_it_before_any_case(project: Any) -> None:
    project.pytester.makepyfile(hello_pipeline="import json\n" + textwrap.dedent(E2E_PIPELINE))
    project.write_cases([{"id": "greet", "question": "How do you greet someone?", "answers": ["Bonjour Bonjour Bonjour"]}])
    project.config["pipeline"] = {"factory": "hello_pipeline:build", "options": {"greeting": "Bonjour", "max_hops": 3}}
    project.config["gates"] = {"em": ">= 1.0"}
    path = project.write_config()
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)
    assert [r["answer"] for r in project.last_results()] == ["Bonjour Bonjour Bonjour"]
    assert json.loads((project.path / "factory-called").read_text()) == {"greeting": "Bonjour", "max_hops": 3}

    (project.path / "factory-called").unlink()
    runs = project.run_dirs()
    project.config["pipeline"]["options"] = {"greting": "Bonjour", "max_hops": 3}
    project.write_config()
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([
        "ERROR: invalid genai config (2 problem(s)):",
        f"  {path}:{line(path, 'options:')}: pipeline.options: 'greeting' is a required property",
        f"  {path}:{line(path, 'greting:')}: pipeline.options.greting: unknown key 'pipeline.options.greting' — did you "
        "mean 'pipeline.options.greeting'? (the options of 'hello_pipeline:build': greeting, max_hops, retry)",
    ])
    assert "collected" not in result.stdout.str() and "passed" not in result.stdout.str()  # no case ran
    assert not (project.path / "factory-called").exists()  # nor was the pipeline built
    assert project.run_dirs() == runs  # and no run recorded
