"""Optional dependencies: which extra brings which module, and one clear error when a feature's extra is missing.

`pip install pytest-genai` (the core) evaluates API models; a local model, retrieval and the toxicity classifier
need `[local]`, `[rag]` and `[safety]`. What a config needs is checked at session start (`config_problems`), so a
missing extra stops the session before the first case, naming the key and `pip install 'pytest-genai[EXTRA]'`.
Modules are looked up with `find_spec`, never imported here (this module is light). The table below is kept equal
to pyproject.toml's extras by tests/test_packaging.py.
"""

from __future__ import annotations

import importlib.util
from typing import Any

# extra -> the modules its features import (import names, not PyPI names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "local": ("torch", "transformers", "gguf", "accelerate"),
    "rag": ("faiss", "torch", "transformers"),
    "safety": ("profanity_check",),
}


class MissingExtraError(ImportError):
    """A feature's optional dependencies are not installed; the message names the extra to install."""


def missing(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def install_hint(extra: str) -> str:
    return f"pip install 'pytest-genai[{extra}]'"


def message(extra: str, feature: str, absent: list[str]) -> str:
    return (f"{feature} needs the [{extra}] extra ({', '.join(absent)} not installed): {install_hint(extra)}")


def require(extra: str, feature: str) -> None:
    """Raise MissingExtraError naming the extra when any of its modules is missing."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(message(extra, feature, absent))


def config_needs(config: Any) -> list[tuple[str, str, str]]:
    """(extra, config key, feature) for what this config uses. A custom pipeline's own imports are its own."""
    needs: list[tuple[str, str, str]] = []
    if config.get("llm.provider") == "hf_local":
        needs.append(("local", "llm.provider", "the local model provider hf_local"))
    if config.pipeline.factory == "builtin:rag":
        needs.append(("rag", config.factory_key, "the built-in RAG pipeline (builtin:rag)"))
    if config.get("safety.toxicity.enabled") and config.get("safety.toxicity.classifier") == "profanity_check":
        needs.append(("safety", "safety.toxicity.enabled", "the toxicity classifier profanity_check"))
    return needs


def config_problems(config: Any) -> list[str]:
    """One `file:line: key: message` per missing extra the config needs (config.error formats it)."""
    out, extras = [], []
    for extra, key, feature in config_needs(config):
        absent = missing(extra)
        if absent:
            out.append(str(config.error(key, message(extra, feature, absent))))
            extras.append(extra)
    if len(extras) > 1:
        out.append(f"all at once: pip install 'pytest-genai[{','.join(extras)}]'")
    return out
