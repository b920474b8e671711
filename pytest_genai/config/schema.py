"""The config's JSON Schema (schema.json beside this module), read once (callers must not mutate it)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(resources.files("pytest_genai.config").joinpath("schema.json").read_text("utf-8"))


def all_key_paths(node: dict[str, Any] | None = None, prefix: str = "") -> list[str]:
    node = schema() if node is None else node
    out: list[str] = []
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        out.append(path)
        if isinstance(sub, dict) and sub.get("type") == "object":
            out.extend(all_key_paths(sub, path))
    return out
