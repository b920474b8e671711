"""The Pipeline protocol and how `pipeline:` in the config becomes one."""

from __future__ import annotations

import sys
from typing import Any, Protocol, Union, runtime_checkable

from pytest_genai.resolve import import_target
from pytest_genai.types import Answer, Case


@runtime_checkable
class Pipeline(Protocol):
    """Called with a case; returns an Answer (or a plain string the harness wraps and times)."""

    def __call__(self, case: Case) -> Union[Answer, str]: ...


_BUILTINS: dict[str, str] = {
    "llm": "pytest_genai.pipelines.llm:LLMPipeline.from_config",
    "rag": "pytest_genai.pipelines.rag:RAGPipeline.from_config",
}


def build_pipeline(config: Any, prompt: Any, runtime: Any = None) -> Pipeline:
    spec: str = config.get("pipeline")
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in _BUILTINS:
            raise config.error("pipeline", f"unknown built-in pipeline {spec!r} (known: {', '.join('builtin:' + b for b in _BUILTINS)})")
        factory = import_target(_BUILTINS[name])
        return factory(config, prompt, runtime)
    base = str(config.base_dir)
    if base not in sys.path:  # a factory next to the config imports like a conftest would
        sys.path.insert(0, base)
    try:
        factory = import_target(spec)
    except (ImportError, AttributeError) as exc:
        raise config.error(
            "pipeline", f"cannot load the factory {spec!r}: {type(exc).__name__}: {exc} (the module must be importable: "
            f"installed, or under {base})") from None
    pipeline = factory(config)
    if not callable(pipeline):
        raise config.error("pipeline", f"the factory {spec!r} returned {type(pipeline).__name__}, not a callable taking a case")
    return pipeline

