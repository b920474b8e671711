"""Where pytest-genai keeps derived files (converted weights, later indexes and response caches)."""

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
