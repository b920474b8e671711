"""The fixture of the fault-injection suite: a fresh project (project.py) per row."""

from __future__ import annotations

from typing import Iterator

import pytest

from faults.project import FaultProject


@pytest.fixture
def fault_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProject]:
    project = FaultProject(pytester, monkeypatch)
    with project.cleanup:
        yield project
