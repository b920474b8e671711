"""OpenAI-compatible chat completions over HTTP (OpenAI, vLLM, llama.cpp server, Ollama, ...).

Stdlib only (http.client): no SDK to pin, nothing heavy to import. Thread-safe: one keep-alive
connection per calling thread, so a thread pool reuses connections without sharing sockets.
Retries 429, 5xx, connection errors and timeouts with exponential backoff and full jitter drawn
from a private RNG (the global `random` is seeded per case; drawing from it would change outputs),
honouring Retry-After. The API key is sent as a bearer token and nowhere else: not in reprs,
errors or logs. The key is read from the config when the provider is built, i.e. when a call is about
to be made: a replay builds no provider and needs no key.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping, NoReturn
from urllib.parse import urlsplit

from pytest_genai.llm.base import Generation, LLMError, Message, check_messages

PROVIDER = "openai_compatible"
USER_AGENT = "pytest-genai/0.1 (openai_compatible)"
# A reused keep-alive connection the server closed while idle fails like this before any answer:
# resend once on a fresh connection, without counting an attempt (what urllib3 does too).
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
_URL_CREDENTIALS = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def public_url(url: str) -> str:
    """The URL without `user:password@`: safe to show and to key a cache with."""
    return _URL_CREDENTIALS.sub(r"\1", url.strip()).rstrip("/")


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class OpenAICompatibleLLM:
    """`generate` POSTs `{base_url}/chat/completions` with model, messages, temperature, max_tokens, seed."""

    concurrent: ClassVar[bool] = True  # thread-safe (a connection per thread); randomness is the request's seed
    model_id: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    max_tokens: int = 64
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    model_sha256: str | None = None  # a remote model has no weights to pin; system_fingerprint tells builds apart
    _rng: random.Random = field(default_factory=random.Random, init=False, repr=False, compare=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False, compare=False)
    _conns: list[http.client.HTTPConnection] = field(default_factory=list, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _counts: dict[str, int] = field(default_factory=lambda: {"requests": 0, "retries": 0, "failures": 0},
                                    init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"llm.base_url must be an http(s) URL, got {public_url(self.base_url)!r}")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.backoff_base_s < 0 or self.backoff_max_s <= 0:
            raise ValueError("timeout_s > 0, max_retries >= 0, backoff_base_s >= 0 and backoff_max_s > 0 are required")

    @classmethod
    def from_config(cls, config: Any) -> "OpenAICompatibleLLM":
        base_url = config.get("llm.base_url")
        if not base_url:
            raise config.error("llm.base_url", "the openai_compatible provider needs llm.base_url, e.g. https://api.openai.com/v1")
        try:
            return cls(
                model_id=str(config.get("llm.model_id")),
                base_url=str(base_url),
                api_key=config.get("llm.api_key") or None,
                temperature=float(config.get("llm.temperature", 0.0)),
                max_tokens=int(config.get("llm.max_tokens", 64)),
                timeout_s=float(config.get("llm.timeout_s", 60.0)),
                max_retries=int(config.get("llm.max_retries", 5)),
                backoff_base_s=float(config.get("llm.backoff_base_s", 0.5)),
                backoff_max_s=float(config.get("llm.backoff_max_s", 20.0)),
            )
        except ValueError as exc:
            raise config.error("llm.base_url", str(exc)) from None

    @property
    def endpoint(self) -> str:
        """The completions URL as shown in errors (credentials stripped)."""
        return public_url(self.base_url) + "/chat/completions"

    @property
    def stats(self) -> dict[str, int]:
        """HTTP requests sent, retries made, generate() calls that failed: for run reports."""
        with self._lock:
            return dict(self._counts)

    def generate(self, messages: list[Message], *, seed: int) -> Generation:
        check_messages(messages)  # a None content would go out as JSON null: refuse it before any request
        payload = {"model": self.model_id, "messages": messages, "temperature": self.temperature,
                   "max_tokens": self.max_tokens, "seed": seed}
        body = json.dumps(payload, ensure_ascii=False).encode()
        started = time.perf_counter()
        outcomes: list[str] = []
        for attempt in range(1, self.max_retries + 2):
            retry_after: float | None = None
            try:
                resp = self._send(body)
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, dropped, timed out
                outcomes.append(self._describe(exc))
                if isinstance(exc, ssl.SSLCertVerificationError):
                    self._fail(outcomes, "not retried: the server certificate is not trusted")
            else:
                if resp.status == 200:
                    return self._parse(resp, (time.perf_counter() - started) * 1000, attempt)
                outcomes.append(f"HTTP {resp.status} {resp.reason}: {self._excerpt(resp.body)}".rstrip(": "))
                if resp.status != 429 and resp.status < 500:
                    self._fail(outcomes, "not retried: the request itself was refused")
                retry_after = parse_retry_after(resp.headers)
            if attempt > self.max_retries:
                break
            with self._lock:
                self._counts["retries"] += 1
            time.sleep(self.backoff_delay(attempt, retry_after))
        self._fail(outcomes, "retries exhausted")

    def warm_up(self) -> None:
        """Open this thread's keep-alive connection (DNS, TCP, TLS) before the first case is timed. No request is
        sent: nothing is billed or counted. An unreachable server is left for the cases to report (with retries)."""
        conn = self._connection()
        if conn.sock is None:
            try:
                conn.connect()
            except (OSError, http.client.HTTPException):
                conn.close()

    def backoff_delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds before retry number `retry` (1-based): the server's Retry-After when sent, else
        full jitter uniform(0, base * 2**(retry-1)); always capped by backoff_max_s."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s)
        return self._rng.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1)))

    def close(self) -> None:
        """Close every thread's connection (they reopen on the next call)."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close()

    # -- HTTP ---------------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            parts = urlsplit(self.base_url)
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=self.timeout_s,
                                                   context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout_s)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _send(self, body: bytes) -> _Response:
        conn = self._connection()
        reused = conn.sock is not None
        try:
            return self._roundtrip(conn, body)
        except _STALE_CONNECTION:
            conn.close()
            if not reused:
                raise
            return self._roundtrip(conn, body)  # http.client reopens a closed connection by itself

    def _roundtrip(self, conn: http.client.HTTPConnection, body: bytes) -> _Response:
        parts = urlsplit(self.base_url)
        path = parts.path.rstrip("/") + "/chat/completions" + (f"?{parts.query}" if parts.query else "")
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        with self._lock:
            self._counts["requests"] += 1
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()  # a half-used connection cannot be reused
            raise
        if resp.will_close:
            conn.close()
        return _Response(resp.status, resp.reason, {k: v for k, v in resp.getheaders()}, data)

    # -- results and errors -------------------------------------------------------------------------
    def _parse(self, resp: _Response, latency_ms: float, attempt: int) -> Generation:
        try:
            data = json.loads(resp.body)
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(f"choices[0].message.content is {type(content).__name__}, not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._fail([f"HTTP 200 with an unusable body ({type(exc).__name__}: {exc}): {self._excerpt(resp.body)}"],
                       "not retried", attempts=attempt)
        usage = data.get("usage") or {}
        return Generation(
            text=content.strip(),
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            system_fingerprint=data.get("system_fingerprint"),
            latency_ms=latency_ms,
        )

    def _fail(self, outcomes: list[str], why: str, attempts: int | None = None) -> NoReturn:
        with self._lock:
            self._counts["failures"] += 1
        n = attempts if attempts is not None else len(outcomes)
        detail = outcomes[-1] if len(set(outcomes)) == 1 else "; ".join(f"{i + 1}: {o}" for i, o in enumerate(outcomes))
        raise LLMError(self._redact(
            f"{PROVIDER}: POST {self.endpoint} (model {self.model_id!r}) failed after {n} attempt{'s' if n != 1 else ''} "
            f"({why}): {detail}"
        ))

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"timed out after {self.timeout_s:g} s"
        return f"connection error: {type(exc).__name__}: {exc}".rstrip(": ")

    def _excerpt(self, body: bytes, limit: int = 300) -> str:
        text = body.decode("utf-8", "replace")
        try:
            err = json.loads(text).get("error")
            if isinstance(err, dict) and err.get("message"):
                text = str(err["message"])
        except (ValueError, AttributeError):
            pass
        text = " ".join(text.split())
        return self._redact(text[:limit] + ("..." if len(text) > limit else ""))

    def _redact(self, text: str) -> str:
        """Servers may echo the key (401 messages do): it never leaves this object."""
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "***")
        return text
