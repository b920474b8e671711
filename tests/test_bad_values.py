"""Bad values from a pipeline are that case's problem, never the run's: metadata JSON has no form for is kept in a
typed JSON form (and still sanitized), impossible token counts are a per-case error naming the field, and cost
can never go below zero."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_genai.plain import to_plain

PIPELINE = '''
import datetime
from pytest_genai import Answer, Usage

class Opaque:
    def __str__(self):
        return "opaque for jane.doe@example.com"

def factory(config):
    def pipeline(case):
        text = case.context.split()[0]
        if case.id == "paris":
            meta = {"tags": {"b", "a"}, "raw": b"mail jane.doe@example.com", "when": datetime.date(2026, 12, 7),
                    "obj": Opaque(), "nested": [{"s": frozenset({3})}]}
            return Answer(text=text, usage=Usage(3, 1), metadata=meta, timings={"retrieve_ms": -5.0, "generate_ms": 2.0})
        if case.id == "rome":
            return Answer(text=text, usage=Usage(-5000, 1))  # would make the cost negative
        if case.id == "h2o":
            return Answer(text=text, usage=Usage(True, 1))
        return Answer(text=text, usage=Usage(3, 2))
    return pipeline
'''


def test_non_json_metadata_negative_and_non_integer_tokens_are_per_case(project: Any) -> None:
    project.pytester.makepyfile(genai_bad_values=PIPELINE)
    project.config.update(pipeline="genai_bad_values:factory", gates={"cost_total_usd": ">= 0"})
    project.write_config()
    result = project.run("--genai-config", "genai.yaml")
    out = result.stdout.str()
    assert result.ret == 1, out  # two cases errored; the run is recorded
    by_id = {r["id"]: r for r in project.last_results()}
    meta = by_id["paris"]["metadata"]
    assert meta["tags"] == {"$type": "set", "value": ["a", "b"]}
    assert meta["raw"]["$type"] == "bytes" and "jane.doe@example.com" not in json.dumps(meta)  # decoded, then sanitized
    assert meta["raw"]["value"].startswith("mail <EMAIL")
    assert meta["when"] == {"$type": "datetime.date", "value": "2026-12-07"}
    assert meta["obj"]["$type"].endswith("Opaque") and meta["nested"] == [{"s": {"$type": "frozenset", "value": [3]}}]
    assert "retrieve_ms" not in by_id["paris"]["timings"] and by_id["paris"]["timings"]["generate_ms"] == 2.0
    assert by_id["rome"]["error"] == "ValueError: Answer.usage.input_tokens (tokens_input) must be an int >= 0, got -5000"
    assert by_id["h2o"]["error"] == "TypeError: Answer.usage.input_tokens (tokens_input) must be an int >= 0, got True"
    assert by_id["moon"]["error"] is None and by_id["paris"]["error"] is None
    summary = project.summary()
    assert summary["metrics"]["cost_total_usd"] >= 0 and summary["metrics"]["tokens_input_total"] >= 0
    assert summary["status"] == "complete" and summary["metrics"]["error_rate"] == 0.5


@pytest.mark.parametrize(("value", "form"), [
    ({1, 2}, {"$type": "set", "value": [1, 2]}),
    (b"\xff\xfeok", {"$type": "bytes", "value": "\ufffd\ufffdok"}),
    (float("nan"), None),
    ((1, "a"), [1, "a"]),
])
def test_every_value_has_a_json_form(value: Any, form: Any) -> None:
    assert to_plain(value) == form
    json.dumps(to_plain({"k": value}), allow_nan=False)


def test_numpy_scalars_are_their_python_values() -> None:
    np = pytest.importorskip("numpy")
    assert to_plain({"n": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True)}) == {"n": 3, "f": 0.5, "b": True}


CYCLES = '''
from pytest_genai import Answer, Usage

def factory(config):
    def pipeline(case):
        text = case.context.split()[0]
        if case.id == "paris":
            meta = {"run": {"step": 1}}
            meta["run"]["back"] = meta  # a dict that contains itself
            return Answer(text=text, usage=Usage(3, 1), metadata=meta)
        if case.id == "rome":
            deep = leaf = {}
            for _ in range(5000):
                leaf["x"] = {}
                leaf = leaf["x"]
            return Answer(text=text, usage=Usage(3, 1), metadata={"deep": deep})
        if case.id == "h2o":
            return Answer(text=text, usage=Usage(10**30, 1))
        shared = {"k": 1}  # the same dict twice is no cycle
        return Answer(text=text, usage=Usage(10**12, 1), metadata={"a": shared, "b": shared})
    return pipeline
'''


def test_self_referencing_or_too_deep_metadata_and_absurd_token_counts_are_per_case_errors(project: Any) -> None:
    """Review findings: a metadata dict containing itself was a RecursionError labelled "scoring the case failed";
    Usage(10**30) was accepted (and swamped every token and cost total). Both are now the case's error naming the
    field, the run is recorded, the bound itself (10**12) is accepted."""
    project.pytester.makepyfile(genai_cycles=CYCLES)
    project.config.update(pipeline="genai_cycles:factory", gates={"f1": ">= 0"})
    project.write_config()
    result = project.run("--genai-config", "genai.yaml")
    out = result.stdout.str()
    assert result.ret == 1, out
    by_id = {r["id"]: r for r in project.last_results()}
    assert by_id["paris"]["error"] == ("ValueError: Answer.metadata contains itself: metadata['run']['back'] is "
                                       "metadata (a value holding itself has no JSON form: put a copy, or an id, in "
                                       "metadata)")
    assert by_id["paris"]["metadata"] == {} and by_id["paris"]["em"] == 0.0
    assert by_id["rome"]["error"] == ("ValueError: Answer.metadata is nested 5002 levels deep: too deep for the run "
                                      "record (keep it under 100 levels)")
    assert by_id["h2o"]["error"] == ("ValueError: Answer.usage.input_tokens (tokens_input) must be at most 10**12 "
                                     "tokens, got about 10**30")
    assert by_id["moon"]["error"] is None and by_id["moon"]["input_tokens"] == 10**12
    assert by_id["moon"]["metadata"] == {"a": {"k": 1}, "b": {"k": 1}}
    summary = project.summary()
    assert summary["status"] == "complete" and summary["metrics"]["error_rate"] == 0.75
    assert summary["metrics"]["tokens_input_total"] == 10**12 + 6


def test_absurd_token_counts_from_ctx_llm_calls_are_the_cases_error() -> None:
    """A pipeline returning plain text gets its tokens from its `ctx.llm` calls: a provider reporting 10**30 tokens
    (a broken server) is bounded the same way, the message saying where the count came from."""
    from pytest_genai.context import RecordingLLM
    from pytest_genai.llm.base import Generation
    from pytest_genai.sanitize import Sanitizer
    from pytest_genai.scoring import call_pipeline
    from pytest_genai.types import Case

    class Broken:  # a provider whose server reports an impossible usage
        model_id = "broken"

        def generate(self, messages: Any, *, seed: int) -> Generation:
            return Generation("Paris", 10**30, 1)

    llm = RecordingLLM(Broken())
    case = Case("paris", "What is the capital of France?", ("Paris",))
    answer, _, error = call_pipeline(lambda c: llm.generate([], seed=1).text, case, 1, False, False,
                                     Sanitizer(False, None, ()))
    assert answer is None
    assert error == ("ValueError: Answer.usage.input_tokens (tokens_input), summed over the case's ctx.llm calls, "
                     "must be at most 10**12 tokens, got about 10**30")


@pytest.mark.parametrize("changes, error", [
    ({"contexts": 5}, "TypeError: Answer.contexts must be a list of str (the texts given to the model), got int"),
    ({"contexts": "one text"}, "TypeError: Answer.contexts must be a list of str (the texts given to the model), "
                               "got str"),
    ({"contexts": ["a", {"text": "b"}]}, "TypeError: Answer.contexts[1] must be a str, got dict"),
    ({"metadata": ["not", "a", "dict"]}, "TypeError: Answer.metadata must be a dict, got list"),
])
def test_contexts_and_metadata_of_the_wrong_type_are_the_cases_error_naming_the_field(changes: Any, error: str) -> None:
    from pytest_genai.scoring import as_answer
    from pytest_genai.types import Answer

    assert as_answer(Answer(text="Paris", **changes), 3.0) == (None, 3.0, error)
    assert as_answer(Answer(text="Paris", contexts=["a", "b"], metadata={"k": 1}), 3.0)[2] is None
