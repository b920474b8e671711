"""The LLM provider interface and a registry by name (lm-eval style)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from pytest_genai.registries import PROVIDERS
from pytest_genai.registry import UnknownName

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

    # Optional: `warm_up()` pays what the first call would pay on top of its answer (a model load, kernel
    # compilation, a connection), once, at pipeline build, before any case is timed. Not cached, not counted.


class LLMError(Exception):
    pass


# What a provider's warm-up asks, if it generates at all: tiny, the same for every run.
WARM_UP_MESSAGES: list[Message] = [{"role": "user", "content": "Hello."}]


def warm_up(obj: Any) -> bool:
    """Call `obj.warm_up()` when it has one (a provider, a pipeline, a cache wrapper); True if it had."""
    hook = getattr(obj, "warm_up", None)
    if not callable(hook):
        return False
    hook()
    return True


def check_messages(messages: Any) -> None:
    """Refuse chat messages a provider would mangle (None content is sent as null, or as the string "None"):
    a ValueError naming the message, before anything is sent. Each must be {role: str, content: str}."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{role, content}} dicts, got {messages!r:.80}")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}] must be a {{role, content}} dict, got {type(m).__name__}")
        if not isinstance(m.get("role"), str) or not m["role"]:
            raise ValueError(f"messages[{i}] has no role (a non-empty string): {m.get('role')!r:.40}")
        content = m.get("content")
        if not isinstance(content, str):
            what = "no content" if content is None else f"content of type {type(content).__name__}"
            raise ValueError(f"messages[{i}] (role {m['role']!r}) has {what}: message content must be a string")


def build_llm(config: Any) -> LLM:
    """The provider registered under `llm.provider` (built-ins in pytest_genai/registries.py; a conftest adds
    its own through the `pytest_genai_register` hook)."""
    name = config.get("llm.provider")
    try:
        factory = PROVIDERS.get(name)
    except UnknownName as exc:
        raise config.error("llm.provider", str(exc)) from None
    return factory(config)
