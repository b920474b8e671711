"""What settings a pipeline factory takes: the JSON Schema its `pipeline.options` must satisfy, declared with
`@pipeline_options(schema)` or an `options_schema` attribute (the built-ins take none), and found at config load
without building anything (config/pipeline_spec.py checks the options against it; pipelines/base.py again before
the factory is called)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from pytest_genai.registries import PIPELINES
from pytest_genai.resolve import import_target

F = TypeVar("F")

# What a pipeline that takes no settings declares: `pipeline.options` must be empty (or absent).
NO_OPTIONS: dict[str, Any] = {"type": "object", "additionalProperties": False}

# The schemas of registered names whose factory carries none itself (the built-ins take no options).
_NAMED_OPTIONS: dict[str, Any] = {"builtin:llm": NO_OPTIONS, "builtin:rag": NO_OPTIONS}


def pipeline_options(schema: Mapping[str, Any] | bool) -> Callable[[F], F]:
    """Declare the JSON Schema (draft 2020-12 unless it says `$schema`) that `pipeline.options` must satisfy for
    this factory: a function, a class, or the function under a `@classmethod`. It sets `options_schema`, which a
    class may also write as an attribute. `{"type": "object", "additionalProperties": False, "properties": ...}`
    makes a misspelt option an error with a did-you-mean; `NO_OPTIONS` says the factory takes none."""

    def declare(factory: F) -> F:
        target = getattr(factory, "__func__", factory)  # a classmethod/staticmethod object: its function
        target.options_schema = schema  # type: ignore[attr-defined]
        return factory

    return declare


def options_schema_of(factory: Any, name: str | None = None) -> Any:
    """The options schema `factory` declares (its `options_schema`, or its class's for a classmethod such as
    `MyPipeline.from_context`), else the one declared for the registered `name`, else None (unchecked)."""
    owner = getattr(factory, "__self__", None)
    for holder in (factory, owner if isinstance(owner, type) else None):
        declared = getattr(holder, "options_schema", None) if holder is not None else None
        if declared is not None:
            return declared
    return _NAMED_OPTIONS.get(name) if name is not None else None


def resolve_factory(spec: str) -> Any:
    """`builtin:<name>` or a registered name from the pipeline registry, else a `module:attr` import (the caller
    puts the config's folder on sys.path). Raises UnknownName, ImportError, AttributeError or ValueError."""
    return PIPELINES.get(spec) if by_name(spec) else import_target(spec)


def by_name(spec: str) -> bool:
    """`spec` names a registry entry (a built-in or a registered name), not a `module:attr` target."""
    return spec in PIPELINES or ":" not in spec or spec.startswith("builtin:")


def declared_options_schema(spec: str, base: Path) -> tuple[bool, Any]:
    """At load, before anything is built: (True, the schema `spec`'s factory declares, or None) when the factory
    resolves (a module beside the config imports from `base`, as it would at build), else (False, None): a factory
    that does not load is reported by the build, with its traceback."""
    folder = str(base)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        factory = resolve_factory(spec)
    except Exception:
        return (spec in _NAMED_OPTIONS, _NAMED_OPTIONS.get(spec))
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    return True, options_schema_of(factory, spec)
