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
call, overwrite), "replay" (never call: a miss raises `CacheMiss`). The provider is built (and warmed
up) only when a call is about to be made, before the call is timed: a replay builds none and needs no key.

The sqlite store, and which keys each run used, are in `store.py`; cassettes (a run's entries as JSONL
sorted by key: deterministic bytes, reviewable diffs) in `cassette.py`. Both are re-exported here.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence, cast

from pytest_genai.cache_dir import cache_root
from pytest_genai.config.validate import SECRET_REF
from pytest_genai.llm.base import LLM, Generation, LLMError, Message, build_llm, check_messages, warm_up
from pytest_genai.llm.cassette import THIS_RUN, CassetteError, export_cassette, import_cassette
from pytest_genai.llm.openai_compatible import public_url
from pytest_genai.llm.store import (
    SCHEMA_VERSION,
    CacheEntry,
    ResponseCache,
    normalise,
    request_key,
    run_token,
    sha256_hex,
)

__all__ = [  # the store's and the cassettes' names stay importable from here
    "CACHE_MODES", "SCHEMA_VERSION", "THIS_RUN", "CacheEntry", "CacheMiss", "CacheMode", "CachedLLM", "CassetteError",
    "ResponseCache", "case_label", "default_cache_path", "export_cassette", "generation_params", "import_cassette",
    "parse_mode", "request_key", "request_material", "run_token",
]

CacheMode = Literal["off", "read-write", "record", "replay"]
CACHE_MODES: tuple[CacheMode, ...] = ("off", "read-write", "record", "replay")

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
def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(s in lowered for s in _SECRET_NAMES)


def request_material(provider: str, model: str, base_url: str | None, messages: Sequence[Message],
                     params: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
    """What is hashed into the key and stored beside the answer. Credentials never enter it:
    secret-named params are dropped and `user:pass@` is stripped from the URL."""
    return dict(normalise({
        "provider": provider,
        "model": model,
        "base_url": public_url(base_url) if base_url else None,
        "messages": [dict(m) for m in messages],
        "params": {k: v for k, v in params.items() if not _is_secret_name(k)},
        "seed": seed,
    }))


def generation_params(config: Any) -> dict[str, Any]:
    """The keyed generation parameters of a GenaiConfig: its `llm` section minus transport keys and secrets."""
    llm = config.get("llm") or {}
    secret_keys = set(getattr(config, "secrets", {}))
    return {k: v for k, v in llm.items() if k not in NON_GENERATION_KEYS and f"llm.{k}" not in secret_keys
            and not (isinstance(v, str) and SECRET_REF.search(v))}  # an unresolved reference is a secret too


# -- the LLM wrapper -------------------------------------------------------------------------------
class CachedLLM:
    """An LLM (the same protocol) that answers from the cache according to `mode`.

    `inner` is an LLM or a zero-argument factory, called once, on the first call that needs the
    provider: in replay mode it is never built (no model load, no key needed). A built provider is
    warmed up (`warm_up()`, when it has one) before its first call is timed. `params` are the keyed
    generation parameters (use `generation_params(config)`, or `CachedLLM.from_config`). Each hit and
    each recorded answer is noted as a use of the run (`ResponseCache.note_use`): its cassette holds those.
    `config_name` (the config file's name) makes a replay miss say which command records the answer."""

    def __init__(self, inner: LLM | Callable[[], LLM], cache: ResponseCache | None, mode: CacheMode, provider: str,
                 base_url: str | None, *, params: Mapping[str, Any], model_id: str | None = None,
                 model_sha256: str | None = None, redact: Callable[[Any], Any] | None = None,
                 digest: Callable[[bytes], str] | None = None, keyed: bool = False,
                 config_name: str | None = None) -> None:
        self.mode = parse_mode(mode)
        self.config_name = config_name
        # `redact` sanitizes what is stored (the request, the answer text) and shown (a miss's excerpt);
        # `digest` keys the RAW request (see the module docstring), so nothing raw is stored yet replay hits.
        self._redact: Callable[[Any], Any] = redact or (lambda x: x)
        self._digest: Callable[[bytes], str] = digest or sha256_hex
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
        self._warmed = False
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
        if sanitizer is not None and redact is not None:
            raise TypeError("CachedLLM.from_config takes a sanitizer or redact=, not both")

        def factory() -> LLM:
            return build_llm(config)

        public_base_url = (config.public.get("llm") or {}).get("base_url")
        if isinstance(public_base_url, str) and SECRET_REF.search(public_base_url):
            base_url = public_base_url  # keyed by the reference, resolved or not: a replay needs no variable
        else:
            base_url = config.get("llm.base_url")
        path = getattr(config, "path", None)
        return cls(inner if inner is not None else factory, cache, mode, str(config.get("llm.provider")), base_url,
                   params=generation_params(config), model_id=str(config.get("llm.model_id")),
                   model_sha256=config.get("llm.model_sha256"),
                   redact=_sanitize_with(sanitizer) if sanitizer is not None else redact,
                   digest=sanitizer.digest if sanitizer is not None else None,
                   keyed=bool(getattr(sanitizer, "keyed", False)), config_name=path.name if path is not None else None)

    @property
    def inner(self) -> LLM:
        """The provider, built and warmed up on first use (once, even when threads race for it)."""
        if self._inner is None or not self._warmed:
            with self._lock:
                if self._inner is None:
                    assert self._factory is not None
                    self._inner = self._factory()
                if not self._warmed:
                    warm_up(self._inner)  # model loads and first-call costs: never inside a timed call
                    self._warmed = True
        return self._inner

    def warm_up(self) -> None:
        """At pipeline build: build and warm the provider where every case will call it ("off", "record").
        A replay never builds it; read-write builds it on its first miss (still warmed before that call is timed)."""
        if self.mode in ("off", "record"):
            self.inner

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
                if self.mode == "read-write":  # a replay exports nothing (and may read a copy it cannot write)
                    self.cache.note_use(key)
                return replace(entry.generation, cached=True)
        self._count("misses")
        if self.mode == "replay":
            raise self._miss(key, messages, seed)
        inner = self.inner  # built and warmed up here, outside the timed call: a lazy load is not this answer's latency
        started = time.perf_counter()
        gen = inner.generate(messages, seed=seed)
        if gen.latency_ms is None:
            gen = replace(gen, latency_ms=(time.perf_counter() - started) * 1000)
        self.cache.put(self._redact(raw), replace(gen, text=self._redact(gen.text)), key=key)
        self.cache.note_use(key)
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
        where = (f"the cassette given with --genai-cassette (imported into {self.cache.path})"
                 if self.cache.path.parent.name.startswith("genai-replay-") else f"the response cache {self.cache.path}")
        cfg = self.config_name or "CONFIG"
        only = f" -k {case!r}" if case else ""
        return CacheMiss(
            f"replay: no recorded response for {who} (model {self.model_id!r}, seed {seed}, prompt {excerpt!r}): "
            f"cache key {key} is not in {where}; --genai-cache replay never calls the provider. Record it, with the "
            f"provider reachable and its key set: `pytest --genai-config {cfg} --genai-cache record{only}` (or "
            f"--genai-cache read-write); to rewrite a committed cassette, record every case: `pytest --genai-config "
            f"{cfg} --genai-cache record --genai-cassette FILE`.{keyed}",
            key=key, model_id=self.model_id, seed=seed, case=case,
        )


def _sanitize_with(sanitizer: Any) -> Callable[[Any], Any]:
    """One redact callable from a sanitizer: `text` for strings, `obj` for JSON-like values."""
    def redact(value: Any) -> Any:
        return sanitizer.text(value) if isinstance(value, str) else sanitizer.obj(value)

    return redact
