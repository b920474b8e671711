"""Which cases a shard runs, and which eval (group) it belongs to. Pure and light: imported by the plugin."""

from __future__ import annotations

import hashlib
import re
from typing import Mapping

SHARD_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
GROUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # safe in an MLflow search filter and a run name


class ShardError(ValueError):
    """A bad --genai-shard / --genai-group; the message says what is expected."""


def parse_shard(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N) with 1 <= I <= N."""
    m = SHARD_SPEC.match(text or "")
    if not m:
        raise ShardError(f"--genai-shard {text!r}: expected I/N, e.g. 1/4 (shard I of N, 1 <= I <= N)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ShardError(f"--genai-shard {text}: I must be between 1 and N (got shard {i} of {n})")
    return i, n


def shard_of(case_id: str, n: int) -> int:
    """The shard (1..n) of a case: a hash of its id alone, so adding or removing other cases moves no case."""
    return int(hashlib.sha256(case_id.encode("utf-8")).hexdigest()[:16], 16) % n + 1


def default_group(environ: Mapping[str, str]) -> str | None:
    """GITHUB_RUN_ID-GITHUB_RUN_ATTEMPT in GitHub Actions (every job of one workflow run shares it), else None."""
    run_id = environ.get("GITHUB_RUN_ID")
    if not run_id:
        return None
    return f"{run_id}-{environ.get('GITHUB_RUN_ATTEMPT') or '1'}"


def check_group(group: str, flag: str = "--genai-group") -> str:
    if not GROUP_ID.match(group):
        raise ShardError(f"{flag} {group!r}: use letters, digits, '.', '_' or '-' (at most 100, starting with a "
                         "letter or digit)")
    return group
