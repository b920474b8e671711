"""Stash keys shared by the thin plugin and the eval plugin (kept import-light)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_genai.session import EvalSession

STATE_KEY: "pytest.StashKey[EvalSession]" = pytest.StashKey()
