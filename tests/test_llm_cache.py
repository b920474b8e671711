"""Record/replay response cache against a real OpenAI stub on 127.0.0.1 (no mocks): read-write hits and
misses, replay with the server stopped, replay misses, record overwrites, cassettes, keys, secrets never
stored, threads and processes sharing one sqlite file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from pytest_genai.config import GenaiConfig, load_config
from pytest_genai.llm import LLM, Generation, LLMError, build_llm
from pytest_genai.llm.cache import (
    CacheMiss,
    CachedLLM,
    ResponseCache,
    case_label,
    export_cassette,
    generation_params,
    import_cassette,
    request_key,
    request_material,
)
from pytest_genai.testing.openai_stub import OpenAIStub, StubBehaviour, stub_reply

KEY = "sk-test-Hc4mX9eQ1wL7bN3s"
PROMPTS = [[{"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"Context: answer{i} is right here\nQuestion: what is {i}?"}] for i in range(12)]


def make_config(tmp_path: Path, base_url: str, **llm: Any) -> GenaiConfig:
    section: dict[str, Any] = {"provider": "openai_compatible", "base_url": base_url, "api_key": "${OPENAI_API_KEY}",
                               "model_id": "stub-model", "temperature": 0.7, "max_tokens": 16, "timeout_s": 5,
                               "max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 1, **llm}
    path = tmp_path / "genai.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "seed": 3, "pipeline": "builtin:llm", "llm": section,
                                    "eval": {"set": "x.jsonl"}}))
    return load_config(path, environ={"OPENAI_API_KEY": KEY})


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(StubBehaviour(latency_ms=5, api_key=KEY)) as s:
        yield s


@pytest.fixture
def config(tmp_path: Path, stub: OpenAIStub) -> GenaiConfig:
    return make_config(tmp_path, stub.base_url)


@pytest.fixture
def open_cache(tmp_path: Path) -> Iterator[Callable[..., ResponseCache]]:
    opened: list[ResponseCache] = []

    def open_(name: str = "responses.sqlite3") -> ResponseCache:
        cache = ResponseCache(tmp_path / name)
        opened.append(cache)
        return cache

    yield open_
    for c in opened:
        c.close()


class CountingFactory:
    """A lazy provider factory that records whether (and how often) it was called."""

    def __init__(self, config: GenaiConfig) -> None:
        self.config = config
        self.calls = 0
        self.built: list[Any] = []

    def __call__(self) -> LLM:
        self.calls += 1
        llm = build_llm(self.config)
        self.built.append(llm)
        return llm

    def close(self) -> None:
        for llm in self.built:
            llm.close()


def run_all(llm: LLM, prompts: list[list[dict[str, str]]] = PROMPTS) -> list[Generation]:
    return [llm.generate(p, seed=100 + i) for i, p in enumerate(prompts)]


def expected(model: str = "stub-model", temperature: float = 0.7, variant: str = "") -> list[str]:
    return [" ".join(stub_reply(model, p, temperature, 100 + i, variant).split()[:16]) for i, p in enumerate(PROMPTS)]


def test_read_write_misses_then_hits(config: GenaiConfig, stub: OpenAIStub, open_cache: Any) -> None:
    factory = CountingFactory(config)
    llm = CachedLLM.from_config(config, open_cache(), "read-write", inner=factory)
    first = run_all(llm)
    assert [g.text for g in first] == expected() and not any(g.cached for g in first)
    assert llm.stats == {"hits": 0, "misses": 12, "stored": 12} and stub.request_count == 12
    second = run_all(llm)
    assert [g.text for g in second] == expected() and all(g.cached for g in second)
    assert [(g.input_tokens, g.output_tokens, g.system_fingerprint, g.latency_ms) for g in second] == \
        [(g.input_tokens, g.output_tokens, g.system_fingerprint, g.latency_ms) for g in first]  # latency as recorded
    assert llm.stats == {"hits": 12, "misses": 12, "stored": 12} and stub.request_count == 12
    assert factory.calls == 1
    factory.close()


def test_replay_with_the_server_stopped_never_builds_the_provider(config: GenaiConfig, stub: OpenAIStub, open_cache: Any) -> None:
    factory = CountingFactory(config)
    recorded = [g.text for g in run_all(CachedLLM.from_config(config, open_cache(), "read-write", inner=factory))]
    factory.close()
    stub.stop()
    count = stub.request_count
    replay_factory = CountingFactory(config)
    replay = CachedLLM.from_config(config, open_cache("responses.sqlite3"), "replay", inner=replay_factory)
    replayed = run_all(replay)
    assert [g.text for g in replayed] == recorded and all(g.cached for g in replayed)
    assert replay_factory.calls == 0 and not replay.inner_built
    assert stub.request_count == count and not stub.running
    assert replay.stats == {"hits": 12, "misses": 0, "stored": 0}
    # the default factory (build_llm) is lazy too: a dead server is never contacted
    default = CachedLLM.from_config(config, open_cache("responses.sqlite3"), "replay")
    assert [g.text for g in run_all(default)] == recorded and not default.inner_built


def test_replay_miss_names_the_key_the_case_and_the_model(config: GenaiConfig, stub: OpenAIStub, open_cache: Any) -> None:
    factory = CountingFactory(config)
    llm = CachedLLM.from_config(config, open_cache(), "replay", inner=factory)
    key = llm.key_for(PROMPTS[0], seed=7)
    with case_label("paris_capital"), pytest.raises(CacheMiss) as info:
        llm.generate(PROMPTS[0], seed=7)
    msg = str(info.value)
    assert isinstance(info.value, LLMError)
    assert key in msg and "'paris_capital'" in msg and "'stub-model'" in msg and "seed 7" in msg
    assert info.value.key == key and info.value.case == "paris_capital"
    assert factory.calls == 0 and stub.request_count == 0 and llm.stats == {"hits": 0, "misses": 1, "stored": 0}
    assert KEY not in msg


def test_record_always_calls_and_overwrites(config: GenaiConfig, stub: OpenAIStub, open_cache: Any) -> None:
    cache = open_cache()
    factory = CountingFactory(config)
    assert [g.text for g in run_all(CachedLLM.from_config(config, cache, "record", inner=factory))] == expected()
    stub.set_behaviour(StubBehaviour(latency_ms=5, api_key=KEY, variant="v2"))  # the provider's answers change
    rec = CachedLLM.from_config(config, cache, "record", inner=factory)
    assert [g.text for g in run_all(rec)] == expected(variant="v2")
    assert rec.stats == {"hits": 0, "misses": 12, "stored": 12}
    assert stub.request_count == 24 and len(cache) == 12  # overwritten, not duplicated
    replay = CachedLLM.from_config(config, cache, "replay")
    assert [g.text for g in run_all(replay)] == expected(variant="v2")
    factory.close()


def test_off_passes_through(config: GenaiConfig, stub: OpenAIStub, tmp_path: Path) -> None:
    factory = CountingFactory(config)
    llm = CachedLLM.from_config(config, None, "off", inner=factory)
    assert [g.text for g in run_all(llm)] == expected() and stub.request_count == 12
    run_all(llm)
    assert stub.request_count == 24 and llm.stats == {"hits": 0, "misses": 0, "stored": 0}
    assert not list(tmp_path.glob("*.sqlite3*"))
    factory.close()


def test_cassette_export_import_replay_reproduces_texts(config: GenaiConfig, stub: OpenAIStub, open_cache: Any, tmp_path: Path) -> None:
    factory = CountingFactory(config)
    cache = open_cache()
    recorded = [g.text for g in run_all(CachedLLM.from_config(config, cache, "read-write", inner=factory))]
    factory.close()
    cache.close()
    out = tmp_path / "cassettes" / "run.jsonl"
    assert export_cassette(tmp_path / "responses.sqlite3", out) == 12
    first = out.read_bytes()
    export_cassette(tmp_path / "responses.sqlite3", tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == first  # deterministic bytes
    lines = [json.loads(line) for line in first.decode().splitlines()]
    assert [x["key"] for x in lines] == sorted(x["key"] for x in lines)
    assert all(request_key(x["request"]) == x["key"] for x in lines)
    stub.stop()
    assert import_cassette(out, tmp_path / "fresh.sqlite3") == 12
    replay = CachedLLM.from_config(config, open_cache("fresh.sqlite3"), "replay")
    assert [g.text for g in run_all(replay)] == recorded
    export_cassette(tmp_path / "fresh.sqlite3", tmp_path / "roundtrip.jsonl")
    assert (tmp_path / "roundtrip.jsonl").read_bytes() == first  # created_at and all survive the round trip


def test_a_corrupt_cassette_names_file_and_line(config: GenaiConfig, open_cache: Any, tmp_path: Path) -> None:
    from pytest_genai.llm.cache import CassetteError

    cache = open_cache()
    request = request_material("openai_compatible", "m", "http://h/v1", PROMPTS[0], {"temperature": 0}, 1)
    cache.put(request, Generation("Paris", 3, 1, "fp", 12.5))
    cache.close()
    export_cassette(tmp_path / "responses.sqlite3", tmp_path / "c.jsonl")
    good = (tmp_path / "c.jsonl").read_text()
    (tmp_path / "truncated.jsonl").write_text(good + good[:20] + "\n")
    with pytest.raises(CassetteError, match=r"truncated.jsonl:2: not valid JSON"):
        import_cassette(tmp_path / "truncated.jsonl", tmp_path / "other.sqlite3")
    assert import_cassette(tmp_path / "c.jsonl", tmp_path / "good.sqlite3") == 1
    (tmp_path / "broken.jsonl").write_text('{"key": "x"}\n')
    with pytest.raises(ValueError, match="broken.jsonl:1: not a cassette entry"):
        import_cassette(tmp_path / "broken.jsonl", tmp_path / "other.sqlite3")
    with ResponseCache(tmp_path / "other.sqlite3") as other:
        assert len(other) == 0  # all or nothing


def test_the_api_key_never_reaches_the_sqlite_file_or_the_cassette(tmp_path: Path, stub: OpenAIStub) -> None:
    # credentials in the URL are stripped too
    url = stub.base_url.replace("http://", "http://proxyuser:pw-s3cr3t-xyz@")
    config = make_config(tmp_path, url)
    factory = CountingFactory(config)
    with ResponseCache(tmp_path / "responses.sqlite3") as cache:
        llm = CachedLLM.from_config(config, cache, "read-write", inner=factory)
        run_all(llm)
        files = sorted(tmp_path.glob("responses.sqlite3*"))  # the db, and its -wal while open
        blobs = b"".join(f.read_bytes() for f in files)
    factory.close()
    blobs += (tmp_path / "responses.sqlite3").read_bytes()
    export_cassette(tmp_path / "responses.sqlite3", tmp_path / "c.jsonl")
    blobs += (tmp_path / "c.jsonl").read_bytes()
    assert b"answer3" in blobs  # the prompts are there...
    for secret in (KEY, "pw-s3cr3t-xyz", "proxyuser"):
        assert secret.encode() not in blobs  # ...the key and URL credentials are not


def test_keys_cover_every_generation_parameter_and_nothing_else(tmp_path: Path) -> None:
    base = make_config(tmp_path, "http://127.0.0.1:1/v1")
    params = generation_params(base)
    assert params == {"temperature": 0.7, "max_tokens": 16}  # transport, pricing and pool settings are not keyed

    def key(config: GenaiConfig, seed: int = 1, messages: Any = PROMPTS[0]) -> str:
        return CachedLLM.from_config(config, None, "off", inner=CountingFactory(config)).key_for(messages, seed=seed)

    k = key(base)
    assert key(base) == k
    assert key(base, seed=2) != k and key(base, messages=PROMPTS[1]) != k
    def cfg(**llm: Any) -> GenaiConfig:
        return make_config(tmp_path, llm.pop("base_url", "http://127.0.0.1:1/v1"), **llm)

    for change in ({"temperature": 0.2}, {"max_tokens": 17}, {"model_id": "other"}, {"base_url": "http://127.0.0.1:2/v1"}):
        assert key(cfg(**change)) != k, change
    for same in ({"timeout_s": 9}, {"max_retries": 0}, {"backoff_max_s": 3}, {"base_url": "http://127.0.0.1:1/v1/"},
                 {"pricing": {"input_per_1k_tokens": 1.0}}, {"concurrency": 8}):
        assert key(cfg(**same)) == k, same
    # YAML's 1 and 1.0 are one temperature
    a = request_material("p", "m", None, PROMPTS[0], {"temperature": 1}, 1)
    assert request_key(a) == request_key(request_material("p", "m", None, PROMPTS[0], {"temperature": 1.0}, 1))
    assert "api_key" not in request_material("p", "m", None, PROMPTS[0], {"api_key": KEY, "temperature": 1}, 1)["params"]


def test_sixteen_threads_give_the_sequential_answers(config: GenaiConfig, stub: OpenAIStub, open_cache: Any) -> None:
    prompts = [[{"role": "user", "content": f"Passage: w{i} x{i} y{i}\nQ?"}] for i in range(64)]
    direct = build_llm(config)
    sequential = [direct.generate(p, seed=i).text for i, p in enumerate(prompts)]
    direct.close()  # type: ignore[attr-defined]
    factory = CountingFactory(config)
    llm = CachedLLM.from_config(config, open_cache(), "read-write", inner=factory)

    def one(i: int) -> str:
        return llm.generate(prompts[i], seed=i).text

    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(one, range(64)))
    assert concurrent == sequential
    assert factory.calls == 1  # threads racing on the first miss build the provider once
    assert llm.stats == {"hits": 0, "misses": 64, "stored": 64}
    with ThreadPoolExecutor(16) as pool:
        again = list(pool.map(one, range(64)))
    assert again == sequential and llm.stats == {"hits": 64, "misses": 64, "stored": 64}
    assert stub.request_count == 128  # 64 direct + 64 misses
    factory.close()


def test_several_processes_share_one_cache_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite3"
    script = textwrap.dedent(f"""
        import sys
        from pytest_genai.llm import Generation
        from pytest_genai.llm.cache import ResponseCache, request_key, request_material
        worker = int(sys.argv[1])
        with ResponseCache({str(db)!r}) as cache:
            for i in range(150):
                req = request_material("p", "m", None, [{{"role": "user", "content": f"w{{worker}} q{{i}}"}}], {{}}, i)
                cache.put(req, Generation(f"a{{worker}}-{{i}}", 1, 1))
                assert cache.get(request_key(req)) is not None
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    with ResponseCache(db) as cache:
        entries = cache.entries()
    assert len(entries) == 450
    assert {e.generation.text for e in entries} == {f"a{w}-{i}" for w in range(3) for i in range(150)}
