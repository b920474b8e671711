"""Record/replay response cache: one sqlite file, keyed by everything that can change an answer.

Why: re-running an eval against a paid API costs money and time, and CI must be able to replay a
recorded run with no network and no key. The key is a full-length hash of the canonical JSON of the
RAW request {provider, model, base_url, messages, params, seed} (`params`: every generation knob, e.g.
temperature and max_tokens): HMAC-SHA256 with `safety.redact_key` when one is configured, else sha256
-- never of the API key, which is not in the material. What is stored (the request beside the key, the
answer text) is sanitized: nothing raw is on disk, and a cassette can be shared and committed. Keys are
never computed from placeholders: two values whose short placeholders collide never share a key, and a
replay recomputes the key from the raw request the pipeline renders, so a redacted cassette still hits.

Modes: "off" (pass through), "read-write" (hit: cached; miss: call and store), "record" (always
call, overwrite), "replay" (never call: a miss raises `CacheMiss`). Cassettes are the cache as
JSONL sorted by key: deterministic bytes, reviewable diffs.

Concurrency: one sqlite connection per `ResponseCache`, guarded by a lock (calls take microseconds
next to an LLM call); WAL mode, `timeout=30` and one-statement transactions, so several processes
(pytest-xdist workers) can share the file.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence, cast

from pytest_genai.cache_dir import cache_root
from pytest_genai.llm.base import LLM, Generation, LLMError, Message, check_messages
from pytest_genai.llm.openai_compatible import public_url

CacheMode = Literal["off", "read-write", "record", "replay"]
CACHE_MODES: tuple[CacheMode, ...] = ("off", "read-write", "record", "replay")
SCHEMA_VERSION = 1

# llm.* keys that cannot change an answer (transport, accounting) or are keyed elsewhere
# (provider, model_id, base_url). Everything else in `llm` is a generation parameter and is
# keyed: a knob added later changes the key rather than silently serving stale answers.
NON_GENERATION_KEYS = frozenset({
    "provider", "model_id", "base_url", "api_key", "pricing", "concurrency", "batch_size",
    "timeout_s", "max_retries", "backoff_base_s", "backoff_max_s",
})
_SECRET_NAMES = ("api_key", "apikey", "authorization", "password", "secret")

_case_label: contextvars.ContextVar[str | None] = contextvars.ContextVar("pytest_genai_case_label", default=None)


@contextlib.contextmanager
def case_label(label: str | None) -> Iterator[None]:
    """Names the case being run (in this thread/context), so a replay miss can say which one."""
    token = _case_label.set(label)
    try:
        yield
    finally:
        _case_label.reset(token)


class CacheMiss(LLMError):
    """Replay found no recorded response; the message names the key, the case (if labelled), the model."""

    def __init__(self, message: str, key: str = "", model_id: str = "", seed: int | None = None, case: str | None = None) -> None:
        super().__init__(message)
        self.key, self.model_id, self.seed, self.case = key, model_id, seed, case


def parse_mode(value: str) -> CacheMode:
    if value not in CACHE_MODES:
        raise ValueError(f"cache mode {value!r} is not one of {', '.join(CACHE_MODES)}")
    return value


def default_cache_path() -> Path:
    return cache_root() / "responses.sqlite3"


# -- keys ------------------------------------------------------------------------------------------
def _normalise(value: Any) -> Any:
    """JSON-stable form: 0.0 and 0 key alike (YAML gives either), tuples are lists, mappings dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    raise TypeError(f"cannot key a {type(value).__name__} value")


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(s in lowered for s in _SECRET_NAMES)


def request_material(provider: str, model: str, base_url: str | None, messages: Sequence[Message],
                     params: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
    """What is hashed into the key and stored beside the answer. Credentials never enter it:
    secret-named params are dropped and `user:pass@` is stripped from the URL."""
    return dict(_normalise({
        "provider": provider,
        "model": model,
        "base_url": public_url(base_url) if base_url else None,
        "messages": [dict(m) for m in messages],
        "params": {k: v for k, v in params.items() if not _is_secret_name(k)},
        "seed": seed,
    }))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_key(material: Mapping[str, Any], digest: Callable[[bytes], str] = _sha256) -> str:
    """`digest` (64 hex) of the canonical JSON of the RAW material: sha256, or a keyed HMAC (`Sanitizer.digest`)."""
    canonical = json.dumps(_normalise(material), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return digest(canonical.encode())


def generation_params(config: Any) -> dict[str, Any]:
    """The keyed generation parameters of a GenaiConfig: its `llm` section minus transport keys and secrets."""
    llm = config.get("llm") or {}
    secret_keys = set(getattr(config, "secrets", {}))
    return {k: v for k, v in llm.items() if k not in NON_GENERATION_KEYS and f"llm.{k}" not in secret_keys}


# -- storage ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheEntry:
    key: str
    request: dict[str, Any]
    generation: Generation
    created_at: str  # ISO 8601, UTC, when the answer was recorded


def _generation_json(g: Generation) -> dict[str, Any]:
    data = asdict(g)
    data.pop("cached")  # a property of how an answer is served, not of the answer
    return data


def _generation_from(data: Mapping[str, Any]) -> Generation:
    if not isinstance(data.get("text"), str) or not isinstance(data.get("input_tokens"), int) or not isinstance(data.get("output_tokens"), int):
        raise ValueError("a generation needs text (str), input_tokens and output_tokens (int)")
    latency = data.get("latency_ms")
    return Generation(data["text"], data["input_tokens"], data["output_tokens"],
                      system_fingerprint=data.get("system_fingerprint"),
                      latency_ms=float(latency) if latency is not None else None)


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _with_retry(op: Callable[[], Any], seconds: float = 30.0) -> Any:
    """Switching to WAL takes an exclusive lock that sqlite's busy timeout does not wait for: several
    processes opening a new cache at once (xdist workers) retry instead of failing "database is locked"."""
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        try:
            return op()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class ResponseCache:
    """The sqlite store. Thread-safe; several processes may open the same file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        try:
            _with_retry(lambda: self._conn.execute("PRAGMA journal_mode=WAL"))  # type: ignore[union-attr]
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, request TEXT NOT NULL, "
                "generation TEXT NOT NULL, created_at TEXT NOT NULL) WITHOUT ROWID")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise LLMError(f"response cache {self.path} has format {version}; this pytest-genai reads {SCHEMA_VERSION}")
        except BaseException:
            self._conn.close()
            raise

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LLMError(f"response cache {self.path} is closed")
        return self._conn

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            row = self._db().execute("SELECT key, request, generation, created_at FROM responses WHERE key = ?", (key,)).fetchone()
        return _entry(row) if row else None

    def put(self, request: Mapping[str, Any], generation: Generation, created_at: str | None = None,
            key: str | None = None) -> str:
        """Store (or overwrite) the answer to `request` (sanitized) under `key` (of the raw request); returns the key."""
        key = key or request_key(request)
        row = (key, _dumps(_normalise(request)), _dumps(_generation_json(generation)), created_at or _now())
        with self._lock:
            self._db().execute(_UPSERT, row)
        return key

    def put_many(self, entries: Sequence[CacheEntry]) -> None:
        """One transaction: an import is all or nothing."""
        rows = [(e.key, _dumps(_normalise(e.request)), _dumps(_generation_json(e.generation)), e.created_at) for e in entries]
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT, rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def entries(self) -> list[CacheEntry]:
        """Every entry, sorted by key."""
        with self._lock:
            rows = self._db().execute("SELECT key, request, generation, created_at FROM responses ORDER BY key").fetchall()
        return [_entry(r) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_UPSERT = ("INSERT INTO responses (key, request, generation, created_at) VALUES (?, ?, ?, ?) "
           "ON CONFLICT(key) DO UPDATE SET request = excluded.request, generation = excluded.generation, "
           "created_at = excluded.created_at")


def _entry(row: tuple[str, str, str, str]) -> CacheEntry:
    return CacheEntry(row[0], json.loads(row[1]), _generation_from(json.loads(row[2])), row[3])


# -- the LLM wrapper -------------------------------------------------------------------------------
class CachedLLM:
    """An LLM (the same protocol) that answers from the cache according to `mode`.

    `inner` is an LLM or a zero-argument factory, called once, on the first call that needs the
    provider: in replay mode it is never built (no model load, no key needed). `params` are the
    keyed generation parameters (use `generation_params(config)`, or `CachedLLM.from_config`)."""

    def __init__(self, inner: LLM | Callable[[], LLM], cache: ResponseCache | None, mode: CacheMode, provider: str,
                 base_url: str | None, *, params: Mapping[str, Any], model_id: str | None = None,
                 model_sha256: str | None = None, redact: Callable[[Any], Any] | None = None,
                 digest: Callable[[bytes], str] | None = None, keyed: bool = False) -> None:
        self.mode = parse_mode(mode)
        # `redact` sanitizes what is stored (the request, the answer text) and shown (a miss's excerpt);
        # `digest` keys the RAW request (see the module docstring), so nothing raw is stored yet replay hits.
        self._redact: Callable[[Any], Any] = redact or (lambda x: x)
        self._digest: Callable[[bytes], str] = digest or _sha256
        self._keyed = keyed  # `digest` is an HMAC: a replay needs the key the cassette was recorded with
        if self.mode != "off" and cache is None:
            raise ValueError(f"cache mode {mode!r} needs a ResponseCache")
        is_instance = hasattr(inner, "generate")
        if model_id is None:
            if not is_instance:
                raise ValueError("model_id is required when inner is a factory")
            model_id = cast(LLM, inner).model_id
        self.model_id: str = model_id
        self.cache = cache
        self.provider = provider
        self.base_url = base_url
        self.params = dict(params)
        self._model_sha256 = model_sha256
        self._inner: LLM | None = cast(LLM, inner) if is_instance else None
        self._factory: Callable[[], LLM] | None = None if is_instance else cast(Callable[[], LLM], inner)
        self._lock = threading.Lock()
        self._stats = {"hits": 0, "misses": 0, "stored": 0}

    @classmethod
    def from_config(cls, config: Any, cache: ResponseCache | None, mode: CacheMode,
                    sanitizer: Any = None, inner: LLM | Callable[[], LLM] | None = None,
                    redact: Callable[[Any], Any] | None = None) -> "CachedLLM":
        """Keyed from the config; the provider is built lazily with `build_llm(config)` unless given.
        A base_url given as `${ENV}` is keyed by that reference, never by its secret value.

        `sanitizer` (duck-typed: `obj(value)`, `text(str)`, `digest(bytes) -> 64 hex`, e.g.
        `pytest_genai.sanitize.Sanitizer`) sanitizes what is stored and keys the raw request with its
        digest. `redact=` alone is the older form: stored material redacted, keys plain sha256."""
        from pytest_genai.llm.base import build_llm

        if sanitizer is not None and redact is not None:
            raise TypeError("CachedLLM.from_config takes a sanitizer or redact=, not both")

        def factory() -> LLM:
            return build_llm(config)

        base_url = config.get("llm.base_url")
        if "llm.base_url" in getattr(config, "secrets", {}):
            base_url = (config.public.get("llm") or {}).get("base_url")
        return cls(inner if inner is not None else factory, cache, mode, str(config.get("llm.provider")), base_url,
                   params=generation_params(config), model_id=str(config.get("llm.model_id")),
                   model_sha256=config.get("llm.model_sha256"),
                   redact=_sanitize_with(sanitizer) if sanitizer is not None else redact,
                   digest=sanitizer.digest if sanitizer is not None else None,
                   keyed=bool(getattr(sanitizer, "keyed", False)))

    @property
    def inner(self) -> LLM:
        """The provider, built on first use (once, even when threads race for it)."""
        if self._inner is None:
            with self._lock:
                if self._inner is None:
                    assert self._factory is not None
                    self._inner = self._factory()
        return self._inner

    @property
    def inner_built(self) -> bool:
        return self._inner is not None

    @property
    def model_sha256(self) -> str | None:
        built = getattr(self._inner, "model_sha256", None) if self._inner is not None else None
        return built or self._model_sha256

    @property
    def stats(self) -> dict[str, int]:
        """hits (served from the cache), misses (not in it, or not looked up: record), stored."""
        with self._lock:
            return dict(self._stats)

    def key_for(self, messages: Sequence[Message], *, seed: int | None) -> str:
        """The cache key of a request: a full-length (keyed) hash of its raw material."""
        return request_key(self._raw(messages, seed), self._digest)

    def _raw(self, messages: Sequence[Message], seed: int | None) -> dict[str, Any]:
        return request_material(self.provider, self.model_id, self.base_url, messages, self.params, seed)

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    def generate(self, messages: list[Message], *, seed: int) -> Generation:
        check_messages(messages)  # for every provider and mode: a None content is neither keyed nor sent
        if self.mode == "off":
            return self.inner.generate(messages, seed=seed)
        assert self.cache is not None
        raw = self._raw(messages, seed)
        key = request_key(raw, self._digest)
        if self.mode in ("read-write", "replay"):
            entry = self.cache.get(key)
            if entry is not None:
                self._count("hits")
                return replace(entry.generation, cached=True)
        self._count("misses")
        if self.mode == "replay":
            raise self._miss(key, messages, seed)
        started = time.perf_counter()
        gen = self.inner.generate(messages, seed=seed)
        if gen.latency_ms is None:
            gen = replace(gen, latency_ms=(time.perf_counter() - started) * 1000)
        self.cache.put(self._redact(raw), replace(gen, text=self._redact(gen.text)), key=key)
        self._count("stored")
        return replace(gen, cached=False)

    def _miss(self, key: str, messages: Sequence[Message], seed: int) -> CacheMiss:
        case = _case_label.get()
        user = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
        excerpt = self._redact(" ".join((user[-1] if user else "").split()))[:80]  # redact, then cut
        who = f"case {case!r}" if case else "a case"
        keyed = (" Keys are HMACs with safety.redact_key: replay with the key the cassette was recorded with."
                 if self._keyed else "")
        assert self.cache is not None
        return CacheMiss(
            f"replay: no recorded response for {who} (model {self.model_id!r}, seed {seed}, prompt {excerpt!r}): "
            f"cache key {key} is not in {self.cache.path}. Record it with cache mode 'read-write' or 'record', "
            f"or import a cassette that has it.{keyed}",
            key=key, model_id=self.model_id, seed=seed, case=case,
        )


# -- cassettes -------------------------------------------------------------------------------------
def export_cassette(cache_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                    keep: Callable[[CacheEntry], bool] | None = None) -> int:
    """Write the cache as JSONL sorted by key (same cache, same bytes); returns the entry count.
    `keep` filters entries (the plugin drops any written unredacted)."""
    cache_path, out_path = Path(cache_path), Path(out_path)
    if not cache_path.is_file():
        raise FileNotFoundError(f"no response cache at {cache_path}")
    with ResponseCache(cache_path) as cache:
        entries = [e for e in cache.entries() if keep is None or keep(e)]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for e in entries:
                fh.write(_dumps({"key": e.key, "request": e.request, "generation": _generation_json(e.generation),
                                 "created_at": e.created_at}) + "\n")
        os.replace(tmp, out_path)  # readers never see half a cassette
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(entries)


class CassetteError(ValueError):
    """A cassette that cannot be read: a usage error naming the place, never a traceback.
    `str()` is `path:line: message` (line 1-based)."""

    def __init__(self, path: str | os.PathLike[str], line: int, message: str) -> None:
        self.path, self.line, self.message = Path(path), line, message
        super().__init__(f"{path}:{line}: {message}")


_CASSETTE_FIELDS = ("created_at", "generation", "key", "request")
_GENERATION_FIELDS = {"text": (str,), "input_tokens": (int,), "output_tokens": (int,),
                      "system_fingerprint": (str, type(None)), "latency_ms": (int, float, type(None))}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", type(None): "null"}


def _fields_problem(data: Mapping[str, Any], required: Sequence[str], allowed: Sequence[str], where: str) -> str | None:
    missing = [f for f in required if f not in data]
    unknown = sorted(set(data) - set(allowed))
    if missing or unknown:
        parts = ([f"missing field(s) {', '.join(where + f for f in missing)}"] if missing else []) + \
                ([f"unknown field(s) {', '.join(where + str(f) for f in unknown)}"] if unknown else [])
        return "; ".join(parts)
    return None


def _cassette_entry(data: Any) -> CacheEntry:
    """One parsed line, checked field by field (ValueError with what is wrong, for CassetteError)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object {{{', '.join(_CASSETTE_FIELDS)}}}, got {_json_type(data)}")
    problem = _fields_problem(data, _CASSETTE_FIELDS, _CASSETTE_FIELDS, "")
    if problem:
        raise ValueError(problem)
    key, request, gen, created_at = data["key"], data["request"], data["generation"], data["created_at"]
    if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{64}", key):
        raise ValueError(f"'key' must be a 64-hex request hash, got {_json_type(key) if not isinstance(key, str) else repr(key[:80])}")
    if not isinstance(request, dict):
        raise ValueError(f"'request' must be an object, got {_json_type(request)}")
    if not isinstance(created_at, str):
        raise ValueError(f"'created_at' must be a string, got {_json_type(created_at)}")
    if not isinstance(gen, dict):
        raise ValueError(f"'generation' must be an object, got {_json_type(gen)}")
    problem = _fields_problem(gen, ("text", "input_tokens", "output_tokens"), tuple(_GENERATION_FIELDS), "generation.")
    if problem:
        raise ValueError(problem)
    for name, types in _GENERATION_FIELDS.items():
        value = gen.get(name)
        if isinstance(value, bool) or not isinstance(value, types):  # JSON true is not a token count
            wanted = " or ".join(_TYPE_NAMES[t] for t in types if not (t is int and float in types))
            raise ValueError(f"'generation.{name}' must be {wanted}, got {_json_type(value)}")
    for name in ("input_tokens", "output_tokens"):
        if gen[name] < 0:
            raise ValueError(f"'generation.{name}' must not be negative, got {gen[name]}")
    latency = gen.get("latency_ms")
    if latency is not None and not (0 <= latency < float("inf")):
        raise ValueError(f"'generation.latency_ms' must be a finite number >= 0, got {latency}")
    return CacheEntry(key, request, _generation_from(gen), created_at)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def import_cassette(path: str | os.PathLike[str], cache_path: str | os.PathLike[str]) -> int:
    """Load a cassette into a cache (overwriting same keys), all or nothing; returns the entry count.
    Keys are (keyed) hashes of the raw requests, which the cassette never holds: they are taken as written.
    An unreadable line raises `CassetteError` naming it; blank lines are skipped (an empty file is 0 entries)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CassetteError(path, raw[:exc.start].count(b"\n") + 1, f"not valid UTF-8 ({exc.reason})") from None
    entries: list[CacheEntry] = []
    first_line: dict[str, int] = {}
    # split on "\n" only: export writes U+2028 and friends raw inside JSON strings (str.splitlines would cut them)
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CassetteError(path, lineno, f"not valid JSON: {exc.msg} at column {exc.colno}") from None
        try:
            entry = _cassette_entry(data)
        except ValueError as exc:
            raise CassetteError(path, lineno, f"not a cassette entry: {exc}") from None
        if entry.key in first_line:
            raise CassetteError(path, lineno, f"key {entry.key} is already on line {first_line[entry.key]}")
        first_line[entry.key] = lineno
        entries.append(entry)
    with ResponseCache(cache_path) as cache:
        cache.put_many(entries)
    return len(entries)


def _sanitize_with(sanitizer: Any) -> Callable[[Any], Any]:
    """One redact callable from a sanitizer: `text` for strings, `obj` for JSON-like values."""
    def redact(value: Any) -> Any:
        return sanitizer.text(value) if isinstance(value, str) else sanitizer.obj(value)

    return redact
