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
