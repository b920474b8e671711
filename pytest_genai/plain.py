"""Plain data <-> frozen dataclasses, derived from the dataclass fields and their type hints, so the
run record, case results and their JSON Schema never drift apart from hand-written per-field code."""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import sys
import types
import typing
from functools import lru_cache
from typing import Any, Mapping, TypeVar, Union

T = TypeVar("T")


def to_plain(obj: Any) -> Any:
    """JSON-ready data: dataclasses become dicts (field order kept), tuples lists, NaN/inf None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls, vars(module))


def from_plain(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass `cls` from plain data; unknown keys are ignored (newer writers), missing ones take
    the field default (older writers), so records stay readable across schema versions."""
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return _none_for(hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value)
    if origin is tuple:
        item = args[0] if args else Any
        return tuple(_convert(item, v) for v in value)
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        val_hint = args[1] if len(args) == 2 else Any
        return {k: _convert(val_hint, v) for k, v in value.items()}
    if hint is float:
        return float(value)
    return value


def _none_for(hint: Any) -> Any:
    """None in JSON: NaN for a float field (a non-finite value written as null), else None."""
    return float("nan") if hint is float else None


def json_schema(cls: type, title: str | None = None) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for the dataclass `cls`, from the same hints `from_plain` reads."""
    defs: dict[str, Any] = {}
    root = _schema_for(cls, defs)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title or cls.__name__, **defs.pop(cls.__name__)}
    if defs:
        schema["$defs"] = defs
    del root
    return schema


def _schema_for(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        name = hint.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            hints = _hints(hint)
            props = {f.name: _schema_for(hints[f.name], defs) for f in dataclasses.fields(hint)}
            required = [f.name for f in dataclasses.fields(hint)
                        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
            doc = (hint.__doc__ or "").strip().split("\n")[0]
            defs[name] = {"type": "object", "description": doc, "properties": props, "required": required}
        return {"$ref": f"#/$defs/{name}"}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema_for(a, defs) for a in args]}
    if origin is tuple:
        return {"type": "array", "items": _schema_for(args[0], defs) if args else {}}
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        return {"type": "object", "additionalProperties": _schema_for(args[1], defs) if len(args) == 2 else {}}
    if hint is type(None):
        return {"type": "null"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": ["number", "null"]}  # non-finite floats are written as null
    if hint is str:
        return {"type": "string"}
    return {}
