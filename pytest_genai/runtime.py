"""Run-time options that are not part of the pinned config (they change how, not what, is measured):
the response cache mode, its file, a cassette, and the concurrency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_genai.llm import build_llm
from pytest_genai.llm.cache import CachedLLM, ResponseCache
from pytest_genai.llm.tokens import CountingLLM
from pytest_genai.sanitize import Sanitizer

CACHE_MODES = ("off", "read-write", "record", "replay")


@dataclass(frozen=True)
class Runtime:
    cache_mode: str = "off"
    cache_path: Path | None = None
    cassette: Path | None = None
    concurrency: int = 1
    dry_run: bool = False  # the provider is never built: a CountingLLM counts each request's input tokens


def make_llm(config: Any, runtime: Runtime | None, sanitizer: Any = None) -> Any:
    """The configured provider, wrapped in the record/replay cache when one is asked for. In replay the
    provider is never built: a fork's CI without secrets can run the whole eval. The cache stores only
    sanitized requests and answers; its keys are full-length (keyed) hashes of the raw request."""
    if runtime is not None and runtime.dry_run:
        return CountingLLM.from_config(config)
    if runtime is None or runtime.cache_mode == "off":
        return build_llm(config)

    if sanitizer is None:
        sanitizer = Sanitizer.from_config(config)
    assert runtime.cache_path is not None
    runtime.cache_path.parent.mkdir(parents=True, exist_ok=True)
    return CachedLLM.from_config(config, ResponseCache(runtime.cache_path), runtime.cache_mode, sanitizer)  # type: ignore[arg-type]


def generation_provenance(gen: Any) -> dict[str, Any]:
    """What a pipeline passes on from a Generation into Answer.metadata."""
    return {"cached": bool(getattr(gen, "cached", False)), "system_fingerprint": getattr(gen, "system_fingerprint", None)}
