"""Git facts for run tags (MLflow cannot find git under pytest, so we ask git ourselves)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitInfo:
    commit: str
    dirty: bool | None
    branch: str


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(cwd: Path) -> GitInfo:
    commit = _git(cwd, "rev-parse", "HEAD")
    if commit is None:
        return GitInfo("unknown", None, "unknown")
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    branch = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD") or "unknown"
    return GitInfo(commit, bool(status) if status is not None else None, branch)
