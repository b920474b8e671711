"""openai_compatible provider and the OpenAI stub, against a real HTTP server on 127.0.0.1 (no mocks):
answers and request shape, retries with backoff and Retry-After, drops, timeouts, auth, key redaction,
thread safety, keep-alive reuse, and the stub's own CLI and shutdown."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from pytest_genai.config import ConfigError, GenaiConfig, load_config
from pytest_genai.llm import LLMError, build_llm
from pytest_genai.llm.openai_compatible import OpenAICompatibleLLM, parse_retry_after
from pytest_genai.testing.openai_stub import SYSTEM_FINGERPRINT, OpenAIStub, StubBehaviour, stub_reply

KEY = "sk-test-Zq8vK3pW0rT5nY2u"
MSG = [{"role": "system", "content": "Answer briefly."},
       {"role": "user", "content": "Context: Paris is the capital of France.\nQuestion: What is the capital of France?"}]


def make_config(tmp_path: Path, base_url: str, *, api_key: bool = True, environ: dict[str, str] | None = None,
                **llm: Any) -> GenaiConfig:
    section: dict[str, Any] = {"provider": "openai_compatible", "base_url": base_url, "model_id": "stub-model",
                               "max_tokens": 32, "timeout_s": 5, "max_retries": 3, "backoff_base_s": 0.01,
                               "backoff_max_s": 2, **llm}
    if api_key:
        section["api_key"] = "${OPENAI_API_KEY}"
    path = tmp_path / "genai.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "seed": 3, "pipeline": "builtin:llm", "llm": section,
                                    "eval": {"set": "x.jsonl"}}))
    return load_config(path, environ={"OPENAI_API_KEY": KEY} if environ is None else environ)


@pytest.fixture
def make_stub() -> Iterator[Callable[..., OpenAIStub]]:
    stubs: list[OpenAIStub] = []

    def make(idle_timeout_s: float = 5.0, **behaviour: Any) -> OpenAIStub:
        stub = OpenAIStub(StubBehaviour(**behaviour), idle_timeout_s=idle_timeout_s).start()
        stubs.append(stub)
        return stub

    yield make
    for s in stubs:
        s.stop()


@pytest.fixture
def make_llm(tmp_path: Path) -> Iterator[Callable[..., OpenAICompatibleLLM]]:
    built: list[OpenAICompatibleLLM] = []

    def make(base_url: str, **kw: Any) -> OpenAICompatibleLLM:
        llm = build_llm(make_config(tmp_path, base_url, **kw))
        assert isinstance(llm, OpenAICompatibleLLM)
        built.append(llm)
        return llm

    yield make
    for llm in built:
        llm.close()


def test_answers_match_the_stub_and_the_request_carries_every_parameter(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub(api_key=KEY)
    llm = make_llm(stub.base_url, temperature=0.0, max_tokens=32)
    gen = llm.generate(MSG, seed=42)
    assert gen.text == stub_reply("stub-model", MSG, 0.0, 42) and gen.text.startswith("Paris")
    assert gen.input_tokens == sum(len(m["content"].split()) for m in MSG)
    assert gen.output_tokens == len(gen.text.split())
    assert gen.system_fingerprint == SYSTEM_FINGERPRINT
    assert gen.latency_ms is not None and gen.latency_ms > 0 and gen.cached is False
    assert stub.last_request == {"model": "stub-model", "messages": MSG, "temperature": 0.0, "max_tokens": 32, "seed": 42}
    assert llm.model_sha256 is None and llm.stats == {"requests": 1, "retries": 0, "failures": 0}


def test_seeded_sampling_is_deterministic(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub()
    llm = make_llm(stub.base_url, temperature=0.8)
    texts = {seed: llm.generate(MSG, seed=seed).text for seed in range(6)}
    assert texts == {seed: stub_reply("stub-model", MSG, 0.8, seed) for seed in range(6)}
    assert len(set(texts.values())) > 1  # the seed matters at temperature > 0
    assert llm.generate(MSG, seed=3).text == texts[3]


def test_429_retry_after_is_honoured(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub(failures=("429", "429", "429"), retry_after="0.2")
    llm = make_llm(stub.base_url, max_retries=5, backoff_base_s=0.001)
    started = time.perf_counter()
    gen = llm.generate(MSG, seed=1)
    elapsed = time.perf_counter() - started
    assert gen.text == stub_reply("stub-model", MSG, 0.0, 1)
    assert 0.6 <= elapsed < 0.6 + 1.5  # three Retry-After: 0.2 waits, not the 1 ms backoff
    assert stub.request_count == 4 and llm.stats["retries"] == 3


def test_retry_after_is_capped_by_backoff_max(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub(failures=("429",), retry_after="30")
    llm = make_llm(stub.base_url, backoff_max_s=0.05)
    started = time.perf_counter()
    llm.generate(MSG, seed=1)
    assert time.perf_counter() - started < 2.0
    assert stub.request_count == 2


@pytest.mark.parametrize("failures", [("500", "503", "502"), ("drop", "drop"), ("drop", "429", "500")])
def test_server_errors_and_dropped_connections_are_retried(make_stub: Any, make_llm: Any, failures: tuple[str, ...]) -> None:
    stub = make_stub(failures=failures, retry_after=None)
    llm = make_llm(stub.base_url, max_retries=3)
    assert llm.generate(MSG, seed=1).text == stub_reply("stub-model", MSG, 0.0, 1)
    assert stub.request_count == len(failures) + 1
    assert llm.stats["retries"] == len(failures)


def test_final_failure_names_status_attempts_and_url_never_the_key(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub(failures=("500",) * 10, api_key=KEY)
    llm = make_llm(stub.base_url, max_retries=2)
    with pytest.raises(LLMError) as info:
        llm.generate(MSG, seed=1)
    msg = str(info.value)
    assert "failed after 3 attempts" in msg and "HTTP 500" in msg and stub.base_url in msg
    assert stub.request_count == 3 and llm.stats == {"requests": 3, "retries": 2, "failures": 1}
    shown = msg + repr(info.value) + "".join(traceback.format_exception(info.value)) + repr(llm) + str(llm)
    assert KEY not in shown


@pytest.mark.parametrize("status", ["400", "404", "422"])
def test_client_errors_other_than_429_fail_at_once(make_stub: Any, make_llm: Any, status: str) -> None:
    stub = make_stub(failures=(status,) * 5)
    llm = make_llm(stub.base_url, max_retries=5)
    with pytest.raises(LLMError, match=f"failed after 1 attempt .*HTTP {status}"):
        llm.generate(MSG, seed=1)
    assert stub.request_count == 1


def test_401_without_the_key_and_a_wrong_key_is_redacted(make_stub: Any, make_llm: Any, tmp_path: Path) -> None:
    stub = make_stub(api_key=KEY)
    with pytest.raises(LLMError, match="failed after 1 attempt .*HTTP 401"):
        make_llm(stub.base_url, api_key=False).generate(MSG, seed=1)
    wrong = "sk-test-WRONG-9f8e7d6c5b4a"
    llm = make_llm(stub.base_url, environ={"OPENAI_API_KEY": wrong})
    with pytest.raises(LLMError) as info:
        llm.generate(MSG, seed=1)
    # the stub echoes the presented key, as careless servers do: the client must not pass it on
    assert "HTTP 401" in str(info.value) and "***" in str(info.value) and wrong not in str(info.value)
    assert stub.request_count == 2
    assert make_llm(stub.base_url).generate(MSG, seed=1).text.startswith("Paris")


def test_timeouts_are_retried_then_reported(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub(latency_ms=1500)
    llm = make_llm(stub.base_url, timeout_s=0.2, max_retries=1)
    started = time.perf_counter()
    with pytest.raises(LLMError, match="failed after 2 attempts .*timed out after 0.2 s"):
        llm.generate(MSG, seed=1)
    assert time.perf_counter() - started < 1.4
    assert stub.request_count == 2


def test_connection_refused_is_retried_then_reported(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub()
    url = stub.base_url
    stub.stop()
    llm = make_llm(url, max_retries=2)
    with pytest.raises(LLMError, match="failed after 3 attempts .*connection error: ConnectionRefusedError"):
        llm.generate(MSG, seed=1)


def test_a_rate_limited_server_is_survived(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub(rate_limit_per_s=10)
    llm = make_llm(stub.base_url, max_retries=5)
    started = time.perf_counter()
    texts = [llm.generate([{"role": "user", "content": f"q{i}"}], seed=i).text for i in range(14)]
    elapsed = time.perf_counter() - started
    assert texts == [stub_reply("stub-model", [{"role": "user", "content": f"q{i}"}], 0.0, i) for i in range(14)]
    assert stub.request_count > 14 and 0.8 <= elapsed < 4.0


def test_thread_pool_gives_the_sequential_answers(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub(latency_ms=10)
    llm = make_llm(stub.base_url, temperature=0.7)
    prompts = [[{"role": "user", "content": f"Passage: word{i} and more\nQ{i}?"}] for i in range(48)]
    sequential = [llm.generate(p, seed=i).text for i, p in enumerate(prompts)]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(lambda ip: llm.generate(ip[1], seed=ip[0]).text, enumerate(prompts)))
    assert concurrent == sequential
    assert stub.request_count == 96 and llm.stats["retries"] == 0


def test_a_stale_keepalive_connection_is_reopened_without_a_retry(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub(idle_timeout_s=0.1)
    llm = make_llm(stub.base_url, max_retries=0)
    llm.generate(MSG, seed=1)
    time.sleep(0.4)  # the server closes the idle keep-alive connection
    assert llm.generate(MSG, seed=2).text == stub_reply("stub-model", MSG, 0.0, 2)
    assert llm.stats["retries"] == 0 and stub.request_count == 2


def test_a_drop_on_a_reused_connection_is_resent_once_at_no_attempt_cost(make_stub: Any, make_llm: Any) -> None:
    """A drop before any answer on a reused keep-alive connection looks like an idle close: resent once on a
    fresh connection; a drop there is a real failure (so a misbehaving server costs at most 2 requests an attempt)."""
    stub = make_stub()
    llm = make_llm(stub.base_url, max_retries=0)
    llm.generate(MSG, seed=1)
    stub.set_behaviour(StubBehaviour(failures=("drop",)))
    assert llm.generate(MSG, seed=2).text == stub_reply("stub-model", MSG, 0.0, 2)
    stub.set_behaviour(StubBehaviour(failures=("drop", "drop")))
    with pytest.raises(LLMError, match="failed after 1 attempt .*RemoteDisconnected"):
        llm.generate(MSG, seed=3)
    assert stub.request_count == 5 and llm.stats["retries"] == 0


def test_backoff_is_bounded_full_jitter_from_a_private_rng(make_stub: Any, make_llm: Any) -> None:
    stub = make_stub(failures=("500", "500"), retry_after=None)
    llm = make_llm(stub.base_url, backoff_base_s=0.01, backoff_max_s=0.05)
    random.seed(1234)
    state = random.getstate()
    delays = [llm.backoff_delay(n) for n in range(1, 9) for _ in range(20)]
    assert all(0 <= d <= min(0.05, 0.01 * 2 ** (n - 1)) for d, n in zip(delays, [n for n in range(1, 9) for _ in range(20)]))
    assert len(set(delays)) > 100
    llm.generate(MSG, seed=1)  # two jittered retries over real HTTP
    assert random.getstate() == state  # case seeds are not disturbed
    assert llm.backoff_delay(1, retry_after=0.3) == 0.05


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": format_datetime(now + timedelta(seconds=7), usegmt=True)}, now=now) == 7
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_an_unset_key_is_an_error_only_when_the_provider_is_built(tmp_path: Path, make_stub: Any) -> None:
    from pytest_genai.llm.cache import CachedLLM, ResponseCache

    stub = make_stub(api_key=KEY)
    cfg = make_config(tmp_path, "${GENAI_BASE_URL}", environ={})  # neither variable is set: a fork's CI
    assert cfg.unresolved == {"llm.api_key": ("OPENAI_API_KEY",), "llm.base_url": ("GENAI_BASE_URL",)}
    assert "llm.api_key" not in cfg.params() and "llm.base_url" not in cfg.params()
    with pytest.raises(ConfigError) as info:
        build_llm(cfg)  # the first read of a reference nothing resolved
    assert "llm.base_url: environment variable GENAI_BASE_URL is not set" in str(info.value)
    # a replay keys by the reference and builds nothing: it needs neither variable
    live = make_config(tmp_path, "${GENAI_BASE_URL}", environ={"OPENAI_API_KEY": KEY, "GENAI_BASE_URL": stub.base_url})
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        recorder = CachedLLM.from_config(live, cache, "record")
        recorded = recorder.generate(MSG, seed=1)
        recorder.inner.close()  # type: ignore[attr-defined]
        replay = CachedLLM.from_config(cfg, cache, "replay")
        assert replay.generate(MSG, seed=1).text == recorded.text and not replay.inner_built
        # a miss that calls reads the key then, and says which key and variable, never a value
        cfg_url = make_config(tmp_path, stub.base_url, environ={})
        with pytest.raises(ConfigError) as info:
            CachedLLM.from_config(cfg_url, cache, "read-write").generate(MSG, seed=2)
    assert "genai.yaml:4: llm.api_key: environment variable OPENAI_API_KEY is not set" in str(info.value)
    assert "--genai-cache replay" in str(info.value) and stub.request_count == 1
    # any other section's unset variable is still an error when the config is loaded
    path = tmp_path / "genai.yaml"
    path.write_text(path.read_text() + "safety:\n  redact_key: ${NOPE_REDACT}\n")
    with pytest.raises(ConfigError, match="safety.redact_key: environment variable NOPE_REDACT is not set"):
        load_config(path, environ={})


def test_config_requires_base_url_and_validates_transport_settings(tmp_path: Path) -> None:
    path = tmp_path / "genai.yaml"
    path.write_text("version: 1\npipeline: builtin:llm\nllm:\n  provider: openai_compatible\neval:\n  set: x.jsonl\n")
    cfg = load_config(path, environ={})
    assert (cfg.get("llm.timeout_s"), cfg.get("llm.max_retries"), cfg.get("llm.backoff_base_s"), cfg.get("llm.backoff_max_s")) == (60, 5, 0.5, 20)
    with pytest.raises(ConfigError, match="llm.base_url"):
        build_llm(cfg)
    path.write_text("version: 1\npipeline: builtin:llm\nllm:\n  provider: openai_compatible\n  timeout_s: 0\n"
                    "  max_retries: -1\n  backoff_max_s: 0\neval:\n  set: x.jsonl\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    for key in ("llm.timeout_s", "llm.max_retries", "llm.backoff_max_s"):
        assert key in str(info.value)


def test_stub_answer_shape_is_openai_and_deterministic(make_stub: Any) -> None:
    stub = make_stub()
    body = json.dumps({"model": "m", "messages": MSG, "temperature": 0, "seed": 5}).encode()

    def post() -> bytes:
        req = urllib.request.Request(stub.base_url + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            data: bytes = resp.read()
        return data

    raw = post()
    assert raw == post()
    data = json.loads(raw)
    assert data["object"] == "chat.completion" and data["created"] == 0 and data["model"] == "m"
    assert data["id"].startswith("chatcmpl-") and data["system_fingerprint"] == SYSTEM_FINGERPRINT
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(stub.base_url + "/chat/completions", data=b"{}"), timeout=5)
    assert info.value.code == 400
    info.value.close()
    assert stub.requests[-1] == {} and stub.request_count == 3


def test_stub_stop_cuts_keepalive_connections(make_stub: Any) -> None:
    stub = make_stub()
    conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=5)
    body = json.dumps({"model": "m", "messages": MSG})
    conn.request("POST", "/v1/chat/completions", body)
    assert conn.getresponse().read()
    stub.stop()  # must not wait for the idle keep-alive connection
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("POST", "/v1/chat/completions", body)
        conn.getresponse().read()
    conn.close()
    assert not stub.running


def test_stub_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "STUB_KEY": KEY}
    with subprocess.Popen([sys.executable, "-m", "pytest_genai.testing.openai_stub", "--port", "0", "--latency-ms", "5",
                           "--api-key-env", "STUB_KEY"], stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("openai stub listening on http://127.0.0.1:")
            url = line.split()[-1]
            llm = OpenAICompatibleLLM("cli-model", url, api_key=KEY, max_retries=0)
            assert llm.generate(MSG, seed=1).text == stub_reply("cli-model", MSG, 0.0, 1)
            llm.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert "after 1 requests" in proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize(("messages", "message"), [
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": None}],
     r"messages\[1\] \(role 'user'\) has no content: message content must be a string"),
    ([{"role": "user"}], r"messages\[0\] \(role 'user'\) has no content"),
    ([{"role": "user", "content": 42}], r"messages\[0\] \(role 'user'\) has content of type int"),
    ([{"content": "hi"}], r"messages\[0\] has no role"),
    (["hi"], r"messages\[0\] must be a \{role, content\} dict, got str"),
    ([], r"messages must be a non-empty list"),
])
def test_a_message_that_is_not_text_is_refused_before_any_request(make_stub: Any, make_llm: Any, messages: Any,
                                                                  message: str) -> None:
    stub = make_stub()
    llm = make_llm(stub.base_url)
    with pytest.raises(ValueError, match=message):
        llm.generate(messages, seed=1)
    assert stub.request_count == 0 and llm.stats == {"requests": 0, "retries": 0, "failures": 0}
    llm.generate(MSG, seed=1)
    assert stub.request_count == 1 and "None" not in json.dumps(stub.last_request)
