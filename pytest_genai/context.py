"""What a pipeline factory receives: the resolved config, the configured LLM wrapped in the response
cache, the loaded prompt and `seed_for(case)`, so caching, seeding and prompts work for a custom
pipeline exactly as they do for the built-ins.

    def factory(ctx):                       # pipeline: my_pkg.pipeline:factory
        def pipeline(case, seed):           # `seed` is passed when the callable accepts it
            messages = ctx.prompt.render({"question": case.question})
            return ctx.llm.generate(messages, seed=seed).text
        return pipeline

The documented `factory(config)` form keeps working: a factory whose first parameter is not named
`ctx`/`context` (nor annotated `PipelineContext`) is called with the config.

The files a pipeline reads and its own settings are declared in the mapping form of `pipeline:`
(`{factory, artifacts, options}`): `ctx.artifact("data/capitals.json")` is the declared file's path, in the
eval (relative to the config's folder) and in a registered model (its copy in the model's bundle) alike;
`ctx.options` is the `options` mapping, read-only."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from pytest_genai.registries import PROVIDERS
from pytest_genai.runtime import make_llm
from pytest_genai.seeding import case_seed
from pytest_genai.types import Case


@dataclass
class PipelineContext:
    config: Any  # GenaiConfig
    prompt: Any  # PromptTemplate | None
    runtime: Any  # Runtime
    sanitizer: Any  # Sanitizer
    _llm: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    llm_built: bool = False
    prebuilt_index: Any = None  # a packaged model's index folder: builtin:rag loads it instead of the corpus

    @property
    def seed(self) -> int:
        return int(self.config.get("seed"))

    def seed_for(self, case: Case | str) -> int:
        """The case's seed: f(global seed, case id), the same whatever the order, subset or worker."""
        return case_seed(self.seed, case if isinstance(case, str) else case.id)

    @property
    def llm(self) -> Any:
        """The configured `llm.provider`, wrapped in the response cache of `--genai-cache` (built on first use;
        in replay mode the provider itself is never built)."""
        with self._lock:
            if self._llm is None:
                self._llm = RecordingLLM(make_llm(self.config, self.runtime, self.sanitizer))
                self.llm_built = True
            return self._llm

    @property
    def llm_concurrent(self) -> bool:
        """What the provider class declares (`concurrent = True`): its calls are thread-safe and its
        randomness is the request's seed, not a process-wide RNG."""
        return bool(getattr(provider_class(self.config.get("llm.provider")), "concurrent", False))

    @property
    def base_dir(self) -> Any:
        return self.config.base_dir

    def artifact(self, path: str) -> Path:
        """The path of a file or folder declared in `pipeline.artifacts` (or a file inside a declared folder):
        hashed into config_hash and packaged with a registered model. An undeclared path is a ConfigError naming
        pipeline.artifacts."""
        return self.config.artifact(path)

    @property
    def options(self) -> Mapping[str, Any]:
        """`pipeline.options`: the pipeline's own settings (read-only; `${ENV}` references resolved), checked
        against the JSON Schema the factory declares (`@pipeline_options(schema)`) before the factory is called."""
        return self.config.pipeline.options

    def get(self, dotted: str, default: Any = None) -> Any:
        return self.config.get(dotted, default)


def provider_class(name: str | None) -> Any:
    if not name or name not in PROVIDERS:
        return None
    target = PROVIDERS.get(name)
    return getattr(target, "__self__", target)


def wants_context(factory: Callable[..., Any]) -> bool:
    import inspect

    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params:
        return False
    first = params[0]
    annotation = first.annotation if isinstance(first.annotation, str) else getattr(first.annotation, "__name__", "")
    return first.name in ("ctx", "context") or "PipelineContext" in str(annotation)


_ledger = threading.local()


def start_ledger() -> None:
    """Before a pipeline call: collect what this thread's calls to `ctx.llm` return."""
    _ledger.calls = []


def take_ledger() -> list[tuple[Any, Any, float]]:
    calls = getattr(_ledger, "calls", None) or []
    _ledger.calls = None
    return calls


class RecordingLLM:
    """`ctx.llm`: the configured (cached) LLM, noting each generation for the running case so a custom
    pipeline that returns plain text still gets its tokens, cost, cache hits and recorded latency counted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def generate(self, messages: Any, *, seed: int) -> Any:
        import time

        started = time.perf_counter()
        gen = self.inner.generate(messages, seed=seed)
        calls = getattr(_ledger, "calls", None)
        if calls is not None:
            calls.append((messages, gen, (time.perf_counter() - started) * 1000))
        return gen

    def __getattr__(self, name: str) -> Any:  # model_id, model_sha256, stats, generate_batch, ...
        return getattr(self.inner, name)
