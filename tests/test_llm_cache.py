"""Record/replay response cache against a real OpenAI stub on 127.0.0.1 (no mocks): read-write hits and
misses, replay with the server stopped, replay misses, record overwrites, cassettes, keys, secrets never
stored, threads and processes sharing one sqlite file."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
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
STUB_LATENCY_MS = 5  # the conftest `stub` answers after this
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


def test_a_cassette_holds_the_entries_this_run_used_not_the_whole_shared_cache(
        config: GenaiConfig, stub: OpenAIStub, open_cache: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = open_cache()
    others = [cache.put(request_material("p", f"other-{i}", None, PROMPTS[0], {}, i), Generation("x", 1, 1)) for i in range(40)]
    for key in others[:5]:
        cache.note_use(key, run="4242@1")  # another run (another config) that used the same file
    cache.begin_run(owner=True)
    recorder = CachedLLM.from_config(config, cache, "record")
    run_all(recorder, PROMPTS[:8])  # this run records 8 answers...
    recorder.inner.close()  # type: ignore[attr-defined]
    hits = CachedLLM.from_config(config, cache, "read-write")
    assert all(g.cached for g in run_all(hits, PROMPTS[:3]))  # ...and is served 3 of them again
    hits.inner.close()  # type: ignore[attr-defined]
    assert len(cache) == 48
    assert export_cassette(cache.path, tmp_path / "run.jsonl") == 8
    assert {json.loads(x)["request"]["model"] for x in (tmp_path / "run.jsonl").read_text().splitlines()} == {"stub-model"}
    assert export_cassette(cache.path, tmp_path / "other.jsonl", run="4242@1") == 5
    assert export_cassette(cache.path, tmp_path / "all.jsonl", run=None) == 48
    # the next session of this process forgets this one's uses; an xdist worker's start keeps its siblings'
    cache.begin_run(owner=False)
    assert cache.run_keys() is not None and len(cache.run_keys() or ()) == 8
    cache.begin_run(owner=True)
    assert export_cassette(cache.path, tmp_path / "next.jsonl") == 0  # began, used nothing: an empty cassette
    # a cache no run of this process used (filled elsewhere, imported) is exported whole, as before
    with ResponseCache(tmp_path / "plain.sqlite3") as plain:
        plain.put_many(cache.entries())
    assert export_cassette(tmp_path / "plain.sqlite3", tmp_path / "plain.jsonl") == 48


def test_a_run_token_is_this_process_unless_the_session_names_its_controllers() -> None:
    """A worker's session sets the token its xdist controller handed it (workerinput); a session inside a process
    that happens to run under xdist (an in-process pytester run) keeps its own: the environment is not asked."""
    from pytest_genai.llm.store import own_run_token, run_token, set_run_token

    own = run_token()
    assert own == own_run_token() and own.startswith(f"{os.getpid()}@")
    try:
        set_run_token("4242@controller")
        assert run_token() == "4242@controller"
    finally:
        set_run_token(None)
    assert run_token() == own


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


# -- keys of the raw request, sanitized storage ------------------------------------------------------
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REDACT_KEY = b"test-redact-key-0123456789"


class StandInSanitizer:
    """The three methods CachedLLM uses (the real one is pytest_genai.sanitize.Sanitizer): e-mails become
    `<EMAIL:xxxxxx>` placeholders (6 hex, or what `placeholder` says), digests are HMAC-SHA256 when keyed."""

    def __init__(self, key: bytes | None = REDACT_KEY, placeholder: Callable[[str], str] | None = None) -> None:
        self.key = key
        self.keyed = key is not None
        self.placeholder = placeholder or (lambda raw: f"<EMAIL:{hashlib.sha256(raw.encode()).hexdigest()[:6]}>")

    def text(self, s: str | None) -> str | None:
        return EMAIL.sub(lambda m: self.placeholder(m.group()), s) if s else s

    def obj(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.obj(k): self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value

    def digest(self, data: bytes) -> str:
        if self.key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()


def canonical(material: dict[str, Any]) -> bytes:
    return json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def on_disk(tmp_path: Path, *names: str) -> bytes:
    return b"".join(f.read_bytes() for name in names for f in sorted(tmp_path.glob(name + "*")))


PII_PROMPT = [{"role": "user", "content": "Context: ann.lee@example.com staffs the desk\nQuestion: who staffs the desk?"}]


def test_a_redacted_cassette_replays_keyed_by_the_raw_request(config: GenaiConfig, stub: OpenAIStub, open_cache: Any,
                                                              tmp_path: Path) -> None:
    san = StandInSanitizer()
    cache = open_cache()
    live = CachedLLM.from_config(config, cache, "read-write", san)
    gen = live.generate(PII_PROMPT, seed=5)
    live.inner.close()  # type: ignore[attr-defined]
    assert "ann.lee@example.com" in gen.text and not gen.cached  # the caller gets the provider's answer
    raw = request_material("openai_compatible", "stub-model", stub.base_url, PII_PROMPT, {"temperature": 0.7, "max_tokens": 16}, 5)
    key = hmac.new(REDACT_KEY, canonical(raw), hashlib.sha256).hexdigest()
    assert live.key_for(PII_PROMPT, seed=5) == key and len(key) == 64  # keyed, full length, of the raw material
    entry = cache.get(key)
    assert entry is not None and entry.request == san.obj(raw) and entry.generation.text == san.text(gen.text)
    assert "<EMAIL:" in entry.generation.text and "<EMAIL:" in entry.request["messages"][0]["content"]
    while_open = on_disk(tmp_path, "responses.sqlite3")  # the db with its -wal and -shm
    cache.close()
    out = tmp_path / "cassette.jsonl"
    assert export_cassette(tmp_path / "responses.sqlite3", out) == 1
    blobs = while_open + on_disk(tmp_path, "responses.sqlite3") + out.read_bytes()
    assert b"<EMAIL:" in out.read_bytes()
    for raw_value in (b"ann.lee@example.com", b"ann.lee"):
        assert raw_value not in blobs
    stub.stop()
    assert import_cassette(out, tmp_path / "fresh.sqlite3") == 1
    replay = CachedLLM.from_config(config, open_cache("fresh.sqlite3"), "replay", san)
    again = replay.generate(PII_PROMPT, seed=5)
    assert again.cached and again.text == entry.generation.text and replay.stats == {"hits": 1, "misses": 0, "stored": 0}
    assert not replay.inner_built
    # a replay without the redact key (or with another one) recomputes other keys: it misses, and says why
    for other in (StandInSanitizer(b"another-key-0123456789"), StandInSanitizer(None)):
        with pytest.raises(CacheMiss) as info:
            CachedLLM.from_config(config, open_cache("fresh.sqlite3"), "replay", other).generate(PII_PROMPT, seed=5)
        assert "ann.lee" not in str(info.value)
        assert ("replay with the key the cassette was recorded with" in str(info.value)) == other.keyed


def test_values_whose_placeholders_collide_never_share_a_key(config: GenaiConfig, stub: OpenAIStub, open_cache: Any) -> None:
    san = StandInSanitizer(placeholder=lambda raw: "<EMAIL:000000>")  # every e-mail: one placeholder
    ann = [{"role": "user", "content": "Did ann@example.com sign the form?"}]
    bob = [{"role": "user", "content": "Did bob@example.org sign the form?"}]
    assert san.obj(ann) == san.obj(bob)  # the stored requests are the same...
    cache = open_cache()
    llm = CachedLLM.from_config(config, cache, "read-write", san)
    assert llm.key_for(ann, seed=1) != llm.key_for(bob, seed=1)  # ...their keys are not
    texts = {"ann": llm.generate(ann, seed=1).text, "bob": llm.generate(bob, seed=1).text}
    assert texts["ann"] != texts["bob"]  # the stub answers from the raw content (precondition of what follows)
    assert llm.stats == {"hits": 0, "misses": 2, "stored": 2} and len(cache) == 2 and stub.request_count == 2
    llm.inner.close()  # type: ignore[attr-defined]
    replay = CachedLLM.from_config(config, cache, "replay", san)
    assert {"ann": replay.generate(ann, seed=1).text, "bob": replay.generate(bob, seed=1).text} == texts
    # unkeyed, the key is still sha256 of the raw material, never of the placeholders
    plain = CachedLLM.from_config(config, None, "off", StandInSanitizer(None, placeholder=lambda raw: "<EMAIL:000000>"))
    raw = request_material("openai_compatible", "stub-model", stub.base_url, ann, {"temperature": 0.7, "max_tokens": 16}, 1)
    assert plain.key_for(ann, seed=1) == hashlib.sha256(canonical(raw)).hexdigest() == request_key(raw)
    assert plain.key_for(ann, seed=1) != request_key(san.obj(raw))


def test_from_config_keeps_the_older_redact_form(config: GenaiConfig, stub: OpenAIStub, open_cache: Any) -> None:
    san = StandInSanitizer()
    cache = open_cache()
    llm = CachedLLM.from_config(config, cache, "read-write", redact=san.obj)  # what runtime.make_llm passed before
    gen = llm.generate(PII_PROMPT, seed=2)
    llm.inner.close()  # type: ignore[attr-defined]
    raw = request_material("openai_compatible", "stub-model", stub.base_url, PII_PROMPT, {"temperature": 0.7, "max_tokens": 16}, 2)
    entry = cache.get(request_key(raw))  # plain sha256 of the raw material
    assert entry is not None and entry.generation.text == san.text(gen.text) and "ann.lee" not in json.dumps(entry.request)
    with pytest.raises(TypeError, match="not both"):
        CachedLLM.from_config(config, cache, "read-write", san, redact=san.obj)


def test_a_message_without_content_is_refused_before_keying_or_sending(config: GenaiConfig, stub: OpenAIStub,
                                                                       open_cache: Any) -> None:
    cache = open_cache()
    for mode in ("read-write", "replay", "off"):
        llm = CachedLLM.from_config(config, cache, mode, StandInSanitizer())
        with pytest.raises(ValueError, match=r"messages\[1\] \(role 'user'\) has no content"):
            llm.generate([{"role": "system", "content": "Be brief."}, {"role": "user", "content": None}], seed=1)  # type: ignore[dict-item]
        assert not llm.inner_built
    assert stub.request_count == 0 and len(cache) == 0


# -- corrupt cassettes: a usage error naming the file and the line -------------------------------------
GOOD_ENTRY = {"key": "a" * 64, "request": {"messages": []}, "created_at": "2026-12-01T00:00:00+00:00",
              "generation": {"text": "Paris", "input_tokens": 3, "output_tokens": 1, "system_fingerprint": "fp", "latency_ms": 1.5}}


def entry_with(**changes: Any) -> str:
    data = json.loads(json.dumps(GOOD_ENTRY))
    for dotted, value in changes.items():
        node, *rest = dotted.split("__")
        target, last = (data[node], rest[0]) if rest else (data, node)
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return json.dumps(data)


@pytest.mark.parametrize(("line", "message"), [
    ('{"key": "' + "a" * 64 + '", "request": {}', r"not valid JSON: Expecting ',' delimiter at column \d+"),
    ("[1, 2]", r"not a cassette entry: expected a JSON object \{created_at, generation, key, request\}, got an array"),
    (entry_with(generation=..., created_at=...), r"not a cassette entry: missing field\(s\) created_at, generation$"),
    (entry_with(extra=1), r"unknown field\(s\) extra"),
    (entry_with(generation__text=...), r"missing field\(s\) generation\.text"),
    (entry_with(generation__cached=True), r"unknown field\(s\) generation\.cached"),
    (entry_with(key="A" * 64), r"'key' must be a 64-hex request hash, got 'AAAA"),
    (entry_with(key=12), r"'key' must be a 64-hex request hash, got a number"),
    (entry_with(request=["m"]), r"'request' must be an object, got an array"),
    (entry_with(created_at=5), r"'created_at' must be a string, got a number"),
    (entry_with(generation="Paris"), r"'generation' must be an object, got a string"),
    (entry_with(generation__text=None), r"'generation\.text' must be a string, got null"),
    (entry_with(generation__input_tokens="3"), r"'generation\.input_tokens' must be an integer, got a string"),
    (entry_with(generation__output_tokens=True), r"'generation\.output_tokens' must be an integer, got a boolean"),
    (entry_with(generation__output_tokens=-1), r"'generation\.output_tokens' must not be negative"),
    (entry_with(generation__latency_ms="fast"), r"'generation\.latency_ms' must be a number or null, got a string"),
    (entry_with(generation__system_fingerprint=7), r"'generation\.system_fingerprint' must be a string or null, got a number"),
    (entry_with(generation__latency_ms=float("nan")), r"'generation\.latency_ms' must be a finite number >= 0"),
    (json.dumps(GOOD_ENTRY), r"key a{64} is already on line 2"),
])
def test_a_corrupt_line_names_file_line_and_what_is_wrong(tmp_path: Path, line: str, message: str) -> None:
    from pytest_genai.llm.cache import CassetteError

    target = tmp_path / "cache.sqlite3"
    earlier = dict(GOOD_ENTRY, key="b" * 64)
    (tmp_path / "earlier.jsonl").write_text(json.dumps(earlier) + "\n")
    assert import_cassette(tmp_path / "earlier.jsonl", target) == 1
    path = tmp_path / "cassettes" / "x.jsonl"
    path.parent.mkdir()
    path.write_text("\n" + json.dumps(GOOD_ENTRY) + "\n" + line + "\n" + json.dumps(dict(GOOD_ENTRY, key="c" * 64)) + "\n")
    with pytest.raises(CassetteError) as info:
        import_cassette(path, target)
    assert isinstance(info.value, Exception) and info.value.path == path and info.value.line == 3
    assert str(info.value).startswith(f"{path}:3: ")
    assert re.search(message, str(info.value)), str(info.value)
    with ResponseCache(target) as cache:
        assert [e.key for e in cache.entries()] == ["b" * 64]  # all or nothing


def test_invalid_utf8_names_its_line_and_an_empty_cassette_is_no_entries(tmp_path: Path) -> None:
    from pytest_genai.llm.cache import CassetteError

    path = tmp_path / "x.jsonl"
    path.write_bytes(json.dumps(GOOD_ENTRY).encode() + b"\n" + b'{"key": "\xff"}\n')
    with pytest.raises(CassetteError, match=r"x\.jsonl:2: not valid UTF-8"):
        import_cassette(path, tmp_path / "c.sqlite3")
    for body in ("", "\n", "  \n\n"):
        path.write_text(body)
        assert import_cassette(path, tmp_path / "c.sqlite3") == 0
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        assert len(cache) == 0


def test_a_line_separator_inside_a_recorded_string_survives_the_round_trip(tmp_path: Path) -> None:
    request = request_material("p", "m", None, [{"role": "user", "content": "one\u2028two\u0085three"}], {}, 1)
    with ResponseCache(tmp_path / "a.sqlite3") as cache:
        cache.put(request, Generation("x\u2029y", 1, 1))
    export_cassette(tmp_path / "a.sqlite3", tmp_path / "c.jsonl")
    assert "\u2028".encode() in (tmp_path / "c.jsonl").read_bytes()  # written raw (ensure_ascii=False)
    assert import_cassette(tmp_path / "c.jsonl", tmp_path / "b.sqlite3") == 1
    with ResponseCache(tmp_path / "b.sqlite3") as cache:
        assert cache.get(request_key(request)).generation.text == "x\u2029y"  # type: ignore[union-attr]
