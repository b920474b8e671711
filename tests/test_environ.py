"""`overridden`: the one way this package sets environment variables for a block (MLflow timeouts, the tracking
URI, the monitor sink during a re-evaluation) and restores them, unset ones included."""

from __future__ import annotations

import os

import pytest

from pytest_genai.environ import overridden


def test_values_are_set_for_the_block_and_restored_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENAI_T_SET", "before")
    monkeypatch.delenv("GENAI_T_UNSET", raising=False)
    monkeypatch.setenv("GENAI_T_KEPT", "kept")
    with pytest.raises(RuntimeError):
        with overridden({"GENAI_T_SET": "inside", "GENAI_T_UNSET": "new"}, keep=("GENAI_T_KEPT",)):
            assert os.environ["GENAI_T_SET"] == "inside" and os.environ["GENAI_T_UNSET"] == "new"
            os.environ["GENAI_T_KEPT"] = "changed by the block"
            raise RuntimeError("the block failed")
    assert os.environ["GENAI_T_SET"] == "before"
    assert "GENAI_T_UNSET" not in os.environ
    assert os.environ["GENAI_T_KEPT"] == "kept"
    with overridden({"GENAI_T_SET": None}):
        assert "GENAI_T_SET" not in os.environ
    assert os.environ["GENAI_T_SET"] == "before"
