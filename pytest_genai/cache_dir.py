"""Where pytest-genai keeps derived files (converted weights, indexes, response caches) and fetched model weights."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$PYTEST_GENAI_CACHE_DIR, else $XDG_CACHE_HOME/pytest-genai, else ~/.cache/pytest-genai."""
    explicit = os.environ.get("PYTEST_GENAI_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-genai"


def models_root() -> Path:
    """Where `pytest-genai install-models` keeps model packages' weights: $PYTEST_GENAI_MODELS_DIR, else
    `cache_root()/packages`. Apart from the derived files, so that a fresh cache does not mean a new download."""
    explicit = os.environ.get("PYTEST_GENAI_MODELS_DIR")
    return Path(explicit) if explicit else cache_root() / "packages"
