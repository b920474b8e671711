"""Where each alias pointed, and who moved it when and why: a JSON list in one registered-model tag, so an
audit reads it in the MLflow UI and `rollback` knows the version an alias pointed to before."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Mapping

from pytest_genai.names import TAG_ALIAS_HISTORY

MAX_CHARS = 90_000  # the registry's tag values hold 100,000 characters: the oldest entries go first


def read_history(client: Any, name: str) -> list[dict[str, Any]]:
    model = client.get_registered_model(name)
    raw = (model.tags or {}).get(TAG_ALIAS_HISTORY)
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def append_history(client: Any, name: str, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    history = read_history(client, name)
    history.append({**entry, "at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
    text = json.dumps(history, separators=(",", ":"))
    while len(text) > MAX_CHARS and len(history) > 1:
        history.pop(0)
        text = json.dumps(history, separators=(",", ":"))
    client.set_registered_model_tag(name, TAG_ALIAS_HISTORY, text)
    return history


def pointed(history: list[Mapping[str, Any]], alias: str) -> list[str]:
    """The versions `alias` pointed to, oldest first, as a stack: a rollback pops the version it leaves."""
    stack: list[str] = []
    for e in history:
        if e.get("alias") != alias:
            continue
        if e.get("action") == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != e.get("version"):
                stack.append(str(e.get("version")))
        elif not stack or stack[-1] != str(e.get("version")):  # a move to where it already was changes nothing
            stack.append(str(e.get("version")))
    return stack
