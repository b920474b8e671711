"""Git facts for run tags (MLflow cannot find git under pytest, so we ask git ourselves).

Untracked files count as dirty: a new eval set or prompt that is not committed makes the run irreproducible
from the commit alone, exactly like an edited tracked file. Ignored files do not count.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

MAX_DIRTY_PATHS = 20
_KINDS = {"?": "untracked", "M": "modified", "A": "added", "D": "deleted", "R": "renamed", "C": "copied",
          "T": "type changed", "U": "unmerged"}


@dataclass(frozen=True)
class GitInfo:
    commit: str
    dirty: bool | None  # None: git could not tell
    branch: str
    dirty_paths: tuple[str, ...] = ()  # "untracked: eval_sets/new.jsonl", at most MAX_DIRTY_PATHS
    dirty_count: int = 0  # all dirty entries, also those past the cap


def _git(cwd: Path, *args: str, strip: bool = True) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() if strip else out.stdout


def parse_porcelain(status: str) -> list[str]:
    """`git status --porcelain -z` output as "kind: path" entries (a rename names its new path)."""
    entries = status.split("\0")
    out: list[str] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        xy, path = entry[:2], entry[3:]
        if "R" in xy or "C" in xy:
            i += 1  # the next entry is the original path
        code = "U" if "U" in xy or xy in ("AA", "DD") else (xy[0] if xy[0] not in " " else xy[1])
        out.append(f"{_KINDS.get(code, 'changed')}: {path}")
    return out


def git_info(cwd: Path) -> GitInfo:
    """Commit, branch and dirty state of the work tree holding `cwd`; a repo with no commit yet is all dirty."""
    if _git(cwd, "rev-parse", "--is-inside-work-tree") != "true":
        return GitInfo("unknown", None, "unknown")
    commit = _git(cwd, "rev-parse", "--verify", "-q", "HEAD") or "unknown"
    branch = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD") or _git(cwd, "symbolic-ref", "--short", "-q", "HEAD") or "unknown"
    # --no-optional-locks: never take index.lock, so a concurrent git command in the same tree is not disturbed.
    status = _git(cwd, "--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=normal", strip=False)
    if status is None:
        return GitInfo(commit, None, branch)
    entries = parse_porcelain(status)
    return GitInfo(commit, bool(entries), branch, tuple(entries[:MAX_DIRTY_PATHS]), len(entries))
