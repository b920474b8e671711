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


_EXACT = (str, int, bool, type(None))


def to_plain(obj: Any) -> Any:
    """JSON-ready data: dataclasses become dicts (field order kept), tuples lists, NaN/inf None. The exact built-in
    types go first: this runs on every case result, several times (it was ~0.5 ms a case with ABC checks first)."""
    kind = type(obj)
    if kind in _EXACT:
        return obj
    if kind is float:
        return obj if math.isfinite(obj) else None
    if kind is dict:
        return {str(k): to_plain(v) for k, v in obj.items()}
    if kind is tuple or kind is list:
        return [to_plain(v) for v in obj]
    names = _field_names(kind) if dataclasses.is_dataclass(obj) and not isinstance(obj, type) else None
    if names is not None:
        return {n: to_plain(getattr(obj, n)) for n in names}
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return typed_form(obj)


def typed_form(obj: Any) -> Any:
    """A value JSON has no form for (a pipeline's metadata may hold anything): numpy scalars as their Python value;
    anything else as `{"$type": <its type>, "value": <JSON>}`, so a set or bytes never costs the run its record.
    Strings inside are still sanitized by the caller (bytes are decoded as UTF-8 first, for that)."""
    kind = type(obj)
    if kind.__module__ == "numpy" and hasattr(obj, "item"):
        return to_plain(obj.item())
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(obj, (set, frozenset)):
        return {"$type": name, "value": sorted((to_plain(v) for v in obj), key=repr)}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$type": name, "value": bytes(obj).decode("utf-8", "replace")}
    try:
        text = str(obj)
    except Exception as exc:  # noqa: BLE001 - a value whose __str__ fails still gets a form
        text = f"<unprintable: {type(exc).__name__}>"
    return {"$type": name, "value": text}


@lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls, vars(module))


def from_plain(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass `cls` from plain data; unknown keys are ignored (newer writers), missing ones take
    the field default (older writers), so records stay readable across schema versions."""
    kwargs: dict[str, Any] = {}
    for name, convert in _fields(cls):
        if name in data:
            kwargs[name] = convert(data[name])
    return cls(**kwargs)


@lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[tuple[str, Any], ...]:
    hints = _hints(cls)
    return tuple((f.name, _converter(hints[f.name])) for f in dataclasses.fields(cls))  # type: ignore[arg-type]


def _identity(value: Any) -> Any:
    return value


@lru_cache(maxsize=None)
def _converter(hint: Any) -> Any:
    """One function per type hint, built once: reading 10,000 results must not re-inspect hints per value."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            return _identity
        conv = _converter(inner[0])
        return lambda v: None if v is None else conv(v)
    if dataclasses.is_dataclass(hint):
        return lambda v: None if v is None else from_plain(hint, v)
    if origin is tuple:
        item = _converter(args[0]) if args else _identity
        if item is _identity:
            return lambda v: None if v is None else tuple(v)
        return lambda v: None if v is None else tuple(item(x) for x in v)
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        val = _converter(args[1]) if len(args) == 2 else _identity
        if val is _identity:
            return lambda v: None if v is None else dict(v)
        return lambda v: None if v is None else {k: val(x) for k, x in v.items()}
    if hint is float:
        return lambda v: float("nan") if v is None else float(v)  # a non-finite value is written as null
    return _identity


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
