"""A deterministic OpenAI-compatible chat server for tests and benchmarks, stdlib only.

Why: provider, retry, cache and concurrency code must be exercised against a real HTTP server
(no mocked HTTP layer), offline and reproducibly. Answers are a pure function of
(model, messages, temperature, seed, variant); failures, latency, rate limits and auth are scripted
with `StubBehaviour`.

    with OpenAIStub(StubBehaviour(latency_ms=20, failures=("429", "drop"))) as stub:
        stub.base_url      # "http://127.0.0.1:<port>/v1"
        stub.request_count # every POST received, failed ones included

Manual runs and benchmarks: `python -m pytest_genai.testing.openai_stub --port 8000 --latency-ms 100`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

SYSTEM_FINGERPRINT = "fp_stub_v1"
COMPLETIONS_PATH = "/v1/chat/completions"
# Words for answers when the prompt has no Context:/Passage: line, and for sampled suffixes.
WORDS: tuple[str, ...] = (
    "amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
    "kestrel", "lagoon", "meadow", "nectar", "opal", "prairie", "quartz", "raven", "sierra", "tundra",
)
_CONTEXT_PREFIXES = ("context:", "passage:")
_DROP = "drop"


def stub_reply(model: str, messages: Sequence[dict[str, Any]], temperature: float = 0.0, seed: int | None = None,
               variant: str = "") -> str:
    """The answer the stub gives: pure, so tests can compute what to expect.

    The last user message's first line starting with "Context:" or "Passage:" is answered with its
    first 1-3 words (how many depends on the model name, so two models score differently); without
    such a line, a word picked by hash. temperature > 0 appends a word drawn with random.Random(seed).
    A non-empty `variant` (a "new build" of the same model) is appended."""
    user = [m for m in messages if m.get("role") == "user"]
    content = str(user[-1].get("content", "")) if user else ""
    digest = int(hashlib.sha256(f"{model}\0{variant}".encode()).hexdigest()[:8], 16)
    words: list[str] = []
    for line in content.splitlines():
        stripped = line.strip()
        if stripped.lower().startswith(_CONTEXT_PREFIXES):
            words = stripped.split(":", 1)[1].split()[: 1 + digest % 3]
            break
    if not words:
        h = int(hashlib.sha256(f"{model}\0{variant}\0{content}".encode()).hexdigest()[:8], 16)
        words = [WORDS[h % len(WORDS)]]
    if temperature > 0:
        words.append(random.Random(seed if seed is not None else 0).choice(WORDS))
    if variant:
        words.append(variant)
    return " ".join(words)


@dataclass(frozen=True)
class StubBehaviour:
    """What the stub does. `failures` scripts the first requests (after the auth check), in
    arrival order: an HTTP status as a string ("429", "500", "503", "400", ...) or "drop" (close the
    connection without answering); requests past the script succeed. Scripted 429s carry
    `Retry-After: <retry_after>` unless it is None. `rate_limit_per_s` answers 429 (with the
    Retry-After that would free a slot) beyond that many accepted requests in any 1 s window.
    `api_key` set: requests without `Authorization: Bearer <api_key>` get 401. `latency_ms` delays
    successful answers only (failures are fast, as real rate limiters are)."""

    latency_ms: float = 0.0
    failures: tuple[str, ...] = ()
    retry_after: str | None = "0.2"
    rate_limit_per_s: int | None = None
    api_key: str | None = field(default=None, repr=False)
    variant: str = ""

    def __post_init__(self) -> None:
        for f in self.failures:
            if f != _DROP and not (f.isdigit() and 400 <= int(f) <= 599):
                raise ValueError(f"StubBehaviour.failures: {f!r} is neither an HTTP error status (400-599) nor 'drop'")
        if self.latency_ms < 0:
            raise ValueError("StubBehaviour.latency_ms must be >= 0")
        if self.rate_limit_per_s is not None and self.rate_limit_per_s < 1:
            raise ValueError("StubBehaviour.rate_limit_per_s must be >= 1")


class _Server(ThreadingHTTPServer):
    """Big listen backlog: the default 5 drops connections under 16 concurrent clients."""

    request_queue_size = 128
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], stub: "OpenAIStub") -> None:
        self.stub = stub
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Keep-alive connections outlive serve_forever: cut them so a stopped stub is really down."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) or self.stub.stopping.is_set():
            return  # a client that went away, or shutdown: not worth a traceback
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real providers
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid the 40 ms delayed-ACK stall
    server: _Server

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return self.server.stub.idle_timeout_s  # idle keep-alive connections are closed after this

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.stub.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": []})
        else:
            self._error(404, f"no route GET {self.path}", "not_found")

    def do_POST(self) -> None:
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if self.path.split("?", 1)[0].rstrip("/") != COMPLETIONS_PATH:
            return self._error(404, f"no route POST {self.path}", "not_found")
        behaviour, scripted = stub._arrive(body, self.headers.get("Authorization"))
        if scripted == "401":
            presented = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            # Echoes the presented key on purpose, as careless servers do: clients must redact it.
            return self._error(401, f"Incorrect API key provided: {presented or '(none)'}", "invalid_api_key")
        if scripted == _DROP:
            self.close_connection = True
            return
        if scripted is not None:
            status = int(scripted)
            headers = {"Retry-After": behaviour.retry_after} if status == 429 and behaviour.retry_after is not None else {}
            return self._error(status, f"scripted failure {status}", "scripted", headers)
        wait = stub._rate_limited(behaviour)
        if wait is not None:
            return self._error(429, "rate limit reached", "rate_limit_exceeded", {"Retry-After": f"{wait:.2f}"})
        problem = _invalid(body)
        if problem:
            return self._error(400, problem, "invalid_request_error")
        if behaviour.latency_ms and stub.stopping.wait(behaviour.latency_ms / 1000):
            self.close_connection = True
            return
        self._json(200, completion(body, behaviour.variant))

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": {"message": message, "type": "stub_error", "code": code}}, headers)


def _invalid(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' is required"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
        return "'messages' must be a non-empty list of {role, content}"
    return None


def completion(body: dict[str, Any], variant: str = "") -> dict[str, Any]:
    """The OpenAI-shaped response for a request body (fixed `created`, so byte-for-byte deterministic)."""
    model = body["model"]
    messages = body["messages"]
    temperature = float(body.get("temperature") or 0.0)
    seed = body.get("seed")
    text = stub_reply(model, messages, temperature, seed, variant)
    words = text.split()
    finish = "stop"
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
        words, finish = words[:max_tokens], "length"
        text = " ".join(words)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    rid = hashlib.sha256(json.dumps([model, messages, temperature, seed, variant], sort_keys=True).encode()).hexdigest()[:24]
    return {
        "id": f"chatcmpl-stub-{rid}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words), "total_tokens": prompt_tokens + len(words)},
    }


class OpenAIStub:
    """The server on 127.0.0.1 in a background thread. Thread-safe counters for assertions."""

    def __init__(self, behaviour: StubBehaviour | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 idle_timeout_s: float = 5.0, keep_requests: int = 256, verbose: bool = False) -> None:
        self._behaviour = behaviour or StubBehaviour()
        self.host = host
        self.requested_port = port
        self.idle_timeout_s = idle_timeout_s
        self.verbose = verbose
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._count = 0
        self._script_pos = 0
        self._accepted: deque[float] = deque()
        self._bodies: deque[Any] = deque(maxlen=keep_requests)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "OpenAIStub":
        if self._server is not None:
            raise RuntimeError("the stub is already running")
        self.stopping.clear()
        self._server = _Server((self.host, self.requested_port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"openai-stub-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake handlers sleeping on latency, cut keep-alive connections, close the port."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "OpenAIStub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stub is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- behaviour and observations --------------------------------------------------------------
    @property
    def behaviour(self) -> StubBehaviour:
        with self._lock:
            return self._behaviour

    def set_behaviour(self, behaviour: StubBehaviour, *, reset_script: bool = True) -> None:
        """Swap behaviour while running (e.g. a new model `variant`, or a fresh failure script)."""
        with self._lock:
            self._behaviour = behaviour
            if reset_script:
                self._script_pos = 0
                self._accepted.clear()

    @property
    def request_count(self) -> int:
        """Every POST to /v1/chat/completions received, whatever its outcome."""
        with self._lock:
            return self._count

    @property
    def requests(self) -> list[Any]:
        """The most recent POST bodies (parsed JSON; None when not JSON), oldest first."""
        with self._lock:
            return list(self._bodies)

    @property
    def last_request(self) -> Any:
        with self._lock:
            return self._bodies[-1] if self._bodies else None

    def reset_counters(self) -> None:
        with self._lock:
            self._count = 0
            self._bodies.clear()

    def _arrive(self, body: Any, authorization: str | None) -> tuple[StubBehaviour, str | None]:
        """Count a request; decide (atomically) whether it is refused: '401', a scripted failure, or None."""
        with self._lock:
            self._count += 1
            self._bodies.append(body)
            b = self._behaviour
            if b.api_key is not None and authorization != f"Bearer {b.api_key}":
                return b, "401"
            if self._script_pos < len(b.failures):
                self._script_pos += 1
                return b, b.failures[self._script_pos - 1]
            return b, None

    def _rate_limited(self, b: StubBehaviour) -> float | None:
        """Sliding 1 s window; the seconds until a slot frees when full, else None (slot taken)."""
        if b.rate_limit_per_s is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._accepted and now - self._accepted[0] >= 1.0:
                self._accepted.popleft()
            if len(self._accepted) >= b.rate_limit_per_s:
                return max(0.01, 1.0 - (now - self._accepted[0]))
            self._accepted.append(now)
            return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_genai.testing.openai_stub",
                                     description="Deterministic OpenAI-compatible chat server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fail", default="", help="comma-separated script for the first requests, e.g. 429,429,500,drop")
    parser.add_argument("--retry-after", default="0.2", help="Retry-After sent with scripted 429s ('' for none)")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per second before answering 429")
    parser.add_argument("--api-key-env", default=None, help="require 'Bearer $<this variable>' (the key never goes on the command line)")
    parser.add_argument("--variant", default="")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"--api-key-env: the environment variable {args.api_key_env} is not set")
    behaviour = StubBehaviour(
        latency_ms=args.latency_ms,
        failures=tuple(f.strip() for f in args.fail.split(",") if f.strip()),
        retry_after=args.retry_after or None,
        rate_limit_per_s=args.rate_limit,
        api_key=api_key,
        variant=args.variant,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with OpenAIStub(behaviour, port=args.port, verbose=args.verbose) as stub:
        print(f"openai stub listening on {stub.base_url}", flush=True)
        while not done.wait(0.2):
            pass
        print(f"openai stub stopping after {stub.request_count} requests", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
