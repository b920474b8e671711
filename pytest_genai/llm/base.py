"""The LLM provider interface and a registry by name (lm-eval style)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Message = dict[str, str]


@dataclass(frozen=True)
class Generation:
    """One model answer. The first three fields are positional; the rest are optional provenance:
    `system_fingerprint` (the backend build, when the provider reports one), `latency_ms` (as
    measured by the provider, or as recorded when `cached`), `cached` (served by the response cache)."""

    text: str
    input_tokens: int
    output_tokens: int
    system_fingerprint: str | None = None
    latency_ms: float | None = None
    cached: bool = False


class LLM(Protocol):
    # Read-only members: plain attributes, frozen dataclass fields and properties (a cache wrapper) all fit.
    @property
    def model_id(self) -> str: ...

    @property
    def model_sha256(self) -> str | None: ...

    def generate(self, messages: list[Message], *, seed: int) -> Generation: ...


class LLMError(Exception):
    pass


_PROVIDERS: dict[str, str] = {
    "hf_local": "pytest_genai.llm.hf_local:HFLocalLLM.from_config",
    "openai_compatible": "pytest_genai.llm.openai_compatible:OpenAICompatibleLLM.from_config",
}


def build_llm(config: Any) -> LLM:
    name = config.get("llm.provider")
    target = _PROVIDERS.get(name)
    if target is None:
        raise config.error("llm.provider", f"unknown provider {name!r} (known: {', '.join(sorted(_PROVIDERS))})")
    from pytest_genai.resolve import import_target

    return import_target(target)(config)
