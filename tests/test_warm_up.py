"""Honest latency: whatever is lazy (a model load, a first-call compilation, an index or embedder load) happens
at pipeline build, in a warm-up that is not timed, cached or counted, so the first case's latency is within the
spread of the others. Shown on a provider and a pipeline whose first call is artificially slow, and once on the
real local model (SmolLM2-135M), whose load fell inside the first case when a response cache was used."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
import yaml

from conftest import Project
from pytest_genai.cache_dir import cache_root

LOAD_S = 1.5  # what the lazy first use costs
CALL_S = 0.2  # what every call costs
CASES = [{"id": f"c{i}", "question": f"What is item {i}?", "answers": [f"v{i}"], "context": f"v{i} is item {i}"}
         for i in range(5)]

PROVIDER = f'''
import time
from pathlib import Path
from pytest_genai.llm import Generation


def event(name):
    with open(Path.cwd() / "events.txt", "a") as fh:
        fh.write(name + "\\n")


class SlowFirstLLM:
    """Loads its model on first use (a sleep), unless warmed up at build."""

    model_sha256 = None

    def __init__(self, model_id):
        self.model_id = model_id
        self.loaded = False
        event("built")

    @classmethod
    def from_config(cls, config):
        return cls(config.get("llm.model_id"))

    def _load(self):
        if not self.loaded:
            time.sleep({LOAD_S})
            self.loaded = True

    def warm_up(self):
        event("warm_up")
        self._load()

    def generate(self, messages, *, seed):
        event("generate")
        self._load()
        time.sleep({CALL_S})
        return Generation(messages[-1]["content"].split()[1], 10, 2)
'''

PIPELINE = f'''
import time
from pytest_genai import Answer


class LazyIndexPipeline:
    """A user's pipeline that loads its index on first use (a sleep) and says how to warm it up."""

    def __init__(self, ctx):
        self.index = None

    def warm_up(self):
        with open("events.txt", "a") as fh:
            fh.write("pipeline warm_up\\n")
        self._load()

    def _load(self):
        if self.index is None:
            time.sleep({LOAD_S})
            self.index = {{}}

    def __call__(self, case):
        self._load()
        time.sleep({CALL_S})
        return Answer(text=case.context.split()[0])


def factory(ctx):
    return LazyIndexPipeline(ctx)
'''


@pytest.fixture
def slow_project(project: Project) -> Project:
    project.pytester.makepyfile(slow_provider=PROVIDER, lazy_pipeline=PIPELINE)
    project.pytester.makeconftest(
        "def pytest_genai_register(registries):\n"
        "    registries.providers.register('slow_first', 'slow_provider:SlowFirstLLM.from_config', replace=True)\n")
    project.write_cases(CASES)
    project.write_prompt(template="Context: {{ context }}\\nQuestion: {{ question }}")
    project.config.update({"pipeline": "builtin:llm", "prompt": {"id": "qa", "version": 1},
                           "llm": {"provider": "slow_first", "model_id": "slow", "max_tokens": 8}})
    project.config["gates"] = {"error_rate": "== 0"}
    project.write_config()
    return project


def latencies(project: Project) -> list[float]:
    return [r["latency_ms"] for r in project.last_results()]


def assert_first_within_spread(values: list[float]) -> None:
    assert len(values) >= 4
    assert values[0] <= 3 * statistics.median(values), values


def events(project: Project) -> list[str]:
    path = project.path / "events.txt"
    lines = path.read_text().splitlines() if path.is_file() else []
    path.unlink(missing_ok=True)
    return lines


def test_the_provider_is_warmed_up_before_the_first_timed_case(slow_project: Project) -> None:
    slow_project.run("--genai-config", "genai.yaml").assert_outcomes(passed=len(CASES))
    assert_first_within_spread(latencies(slow_project))
    assert events(slow_project) == ["built", "warm_up"] + ["generate"] * len(CASES)
    assert slow_project.summary()["metrics"]["tokens_input_total"] == 10 * len(CASES)  # the warm-up is not counted


def test_with_a_response_cache_the_load_is_not_recorded_and_a_replay_builds_nothing(slow_project: Project) -> None:
    slow_project.run("--genai-config", "genai.yaml", "--genai-cache", "record", "--genai-cassette", "c.jsonl") \
        .assert_outcomes(passed=len(CASES))
    recorded = latencies(slow_project)
    assert_first_within_spread(recorded)
    assert events(slow_project) == ["built", "warm_up"] + ["generate"] * len(CASES)
    cassette = [json.loads(line) for line in (slow_project.path / "c.jsonl").read_text().splitlines()]
    assert len(cassette) == len(CASES)  # the warm-up is never cached
    assert all(e["generation"]["latency_ms"] < LOAD_S * 1000 for e in cassette)
    (slow_project.path / ".pytest-genai" / "cache.sqlite3").unlink()
    slow_project.run("--genai-config", "genai.yaml", "--genai-cache", "replay", "--genai-cassette", "c.jsonl") \
        .assert_outcomes(passed=len(CASES))
    assert events(slow_project) == []  # neither built nor warmed up
    assert latencies(slow_project) == recorded


def test_a_pipeline_with_its_own_warm_up_is_warmed_before_the_first_timed_case(slow_project: Project) -> None:
    slow_project.write_config(pipeline="lazy_pipeline:factory", prompt=None, llm={"model_id": "unused"})
    slow_project.run("--genai-config", "genai.yaml").assert_outcomes(passed=len(CASES))
    assert_first_within_spread(latencies(slow_project))
    assert events(slow_project) == ["pipeline warm_up"]


REPO = Path(__file__).resolve().parents[1]
CONVERTED = cache_root() / "models"  # read before pytester moves HOME: the converted weights are reused


@pytest.mark.slow  # real SmolLM2 generation
def test_the_real_local_model_loads_and_warms_up_before_the_first_recorded_case(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One session on SmolLM2-135M with a response cache (where the model used to load inside the first case)."""
    cache = tmp_path_factory.mktemp("genai-cache")
    if CONVERTED.is_dir():
        (cache / "models").symlink_to(CONVERTED)
    monkeypatch.setenv("PYTEST_GENAI_CACHE_DIR", str(cache))
    cfg = yaml.safe_load((REPO / "genai.passages.yaml").read_text())
    shutil.copytree(REPO / "prompts", pytester.path / "prompts")
    lines = (REPO / cfg["eval"]["set"]).read_text().splitlines()[:4]
    (pytester.path / "evals.jsonl").write_text("\n".join(lines) + "\n")
    cfg["eval"] = {"set": "evals.jsonl"}
    cfg["llm"]["max_tokens"] = 4
    cfg["tracking"] = {"results_dir": "runs", "enabled": False}
    cfg["gates"] = {"error_rate": "== 0"}
    cfg.setdefault("env", {})["lock_file"] = str(REPO / "requirements.lock")
    (pytester.path / "genai.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    pytester.runpytest_subprocess("--genai-config", "genai.yaml", "--genai-cache", "record")
    run_dir = sorted((pytester.path / "runs").iterdir())[-1]
    results = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["error"] for r in results] == [None] * 4  # 4 tokens miss some `expect`s: latency is what is checked
    assert_first_within_spread([r["latency_ms"] for r in results])
