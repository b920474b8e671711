"""Did-you-mean for config keys and metric names."""

from __future__ import annotations

import difflib
from typing import Iterable

from pytest_genai.names import SYNONYMS


def _squash(name: str) -> str:
    return name.lower().replace("-", "_")


def suggest_key(key: str, siblings: Iterable[str], all_paths: Iterable[str], prefix: str = "") -> str | None:
    """Best canonical dotted name for an unknown `key` written under `prefix`."""
    squashed = _squash(key)
    if squashed in SYNONYMS:
        return SYNONYMS[squashed]
    if squashed.replace("_", "") in SYNONYMS:
        return SYNONYMS[squashed.replace("_", "")]
    siblings = list(siblings)
    by_squash = {_squash(s).replace("_", ""): s for s in siblings}
    if squashed.replace("_", "") in by_squash:  # maxTokens -> max_tokens
        return _join(prefix, by_squash[squashed.replace("_", "")])
    close = difflib.get_close_matches(squashed, siblings, n=1, cutoff=0.6)
    if close:
        return _join(prefix, close[0])
    # A known key in the wrong section: `retriever_k` at top level -> rag.retriever_k.
    leaves = {p.rsplit(".", 1)[-1]: p for p in all_paths}
    close = difflib.get_close_matches(squashed, list(leaves), n=1, cutoff=0.75)
    if close:
        return leaves[close[0]]
    return None


def suggest_name(name: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(_squash(name), list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
