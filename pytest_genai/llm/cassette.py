"""Cassettes: a response cache as JSONL sorted by key, deterministic bytes and reviewable diffs, to commit
and to replay with no provider and no key (a fork's CI). An export holds the entries of one run only (the keys
it used, `ResponseCache.run_keys`), never the rest of a cache shared by other configs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pytest_genai.llm.store import CacheEntry, ResponseCache, dumps, generation_from, generation_json

THIS_RUN = "this-run"  # export_cassette's default: the entries this process's run used


def export_cassette(cache_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                    keep: Callable[[CacheEntry], bool] | None = None, *, run: str | None = THIS_RUN) -> int:
    """Write entries as JSONL sorted by key (same entries, same bytes); returns the entry count.

    `run`: whose entries. By default this run's (the process's; an xdist controller's includes its workers'): the
    keys it answered from or recorded, however many other configs share the cache; every entry when no run of this
    process used the file (an export outside a session). A run token (`run_token()`) names another run; None
    exports every entry. `keep` filters further (the plugin drops any entry written unredacted)."""
    cache_path, out_path = Path(cache_path), Path(out_path)
    if not cache_path.is_file():
        raise FileNotFoundError(f"no response cache at {cache_path}")
    with ResponseCache(cache_path) as cache:
        keys = None if run is None else cache.run_keys(None if run == THIS_RUN else run)
        entries = [e for e in cache.entries(keys) if keep is None or keep(e)]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for e in entries:
                fh.write(dumps({"key": e.key, "request": e.request, "generation": generation_json(e.generation),
                                "created_at": e.created_at}) + "\n")
        os.replace(tmp, out_path)  # readers never see half a cassette
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(entries)


class CassetteError(ValueError):
    """A cassette that cannot be read: a usage error naming the place, never a traceback.
    `str()` is `path:line: message` (line 1-based)."""

    def __init__(self, path: str | os.PathLike[str], line: int, message: str) -> None:
        self.path, self.line, self.message = Path(path), line, message
        super().__init__(f"{path}:{line}: {message}")


_CASSETTE_FIELDS = ("created_at", "generation", "key", "request")
_GENERATION_FIELDS = {"text": (str,), "input_tokens": (int,), "output_tokens": (int,),
                      "system_fingerprint": (str, type(None)), "latency_ms": (int, float, type(None))}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", type(None): "null"}


def _fields_problem(data: Mapping[str, Any], required: Sequence[str], allowed: Sequence[str], where: str) -> str | None:
    missing = [f for f in required if f not in data]
    unknown = sorted(set(data) - set(allowed))
    if missing or unknown:
        parts = ([f"missing field(s) {', '.join(where + f for f in missing)}"] if missing else []) + \
                ([f"unknown field(s) {', '.join(where + str(f) for f in unknown)}"] if unknown else [])
        return "; ".join(parts)
    return None


def _cassette_entry(data: Any) -> CacheEntry:
    """One parsed line, checked field by field (ValueError with what is wrong, for CassetteError)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object {{{', '.join(_CASSETTE_FIELDS)}}}, got {_json_type(data)}")
    problem = _fields_problem(data, _CASSETTE_FIELDS, _CASSETTE_FIELDS, "")
    if problem:
        raise ValueError(problem)
    key, request, gen, created_at = data["key"], data["request"], data["generation"], data["created_at"]
    if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{64}", key):
        raise ValueError(f"'key' must be a 64-hex request hash, got {_json_type(key) if not isinstance(key, str) else repr(key[:80])}")
    if not isinstance(request, dict):
        raise ValueError(f"'request' must be an object, got {_json_type(request)}")
    if not isinstance(created_at, str):
        raise ValueError(f"'created_at' must be a string, got {_json_type(created_at)}")
    if not isinstance(gen, dict):
        raise ValueError(f"'generation' must be an object, got {_json_type(gen)}")
    problem = _fields_problem(gen, ("text", "input_tokens", "output_tokens"), tuple(_GENERATION_FIELDS), "generation.")
    if problem:
        raise ValueError(problem)
    for name, types in _GENERATION_FIELDS.items():
        value = gen.get(name)
        if isinstance(value, bool) or not isinstance(value, types):  # JSON true is not a token count
            wanted = " or ".join(_TYPE_NAMES[t] for t in types if not (t is int and float in types))
            raise ValueError(f"'generation.{name}' must be {wanted}, got {_json_type(value)}")
    for name in ("input_tokens", "output_tokens"):
        if gen[name] < 0:
            raise ValueError(f"'generation.{name}' must not be negative, got {gen[name]}")
    latency = gen.get("latency_ms")
    if latency is not None and not (0 <= latency < float("inf")):
        raise ValueError(f"'generation.latency_ms' must be a finite number >= 0, got {latency}")
    return CacheEntry(key, request, generation_from(gen), created_at)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def import_cassette(path: str | os.PathLike[str], cache_path: str | os.PathLike[str]) -> int:
    """Load a cassette into a cache (overwriting same keys), all or nothing; returns the entry count.
    Keys are (keyed) hashes of the raw requests, which the cassette never holds: they are taken as written.
    An unreadable line raises `CassetteError` naming it; blank lines are skipped (an empty file is 0 entries)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CassetteError(path, raw[:exc.start].count(b"\n") + 1, f"not valid UTF-8 ({exc.reason})") from None
    entries: list[CacheEntry] = []
    first_line: dict[str, int] = {}
    # split on "\n" only: export writes U+2028 and friends raw inside JSON strings (str.splitlines would cut them)
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CassetteError(path, lineno, f"not valid JSON: {exc.msg} at column {exc.colno}") from None
        try:
            entry = _cassette_entry(data)
        except ValueError as exc:
            raise CassetteError(path, lineno, f"not a cassette entry: {exc}") from None
        if entry.key in first_line:
            raise CassetteError(path, lineno, f"key {entry.key} is already on line {first_line[entry.key]}")
        first_line[entry.key] = lineno
        entries.append(entry)
    with ResponseCache(cache_path) as cache:
        cache.put_many(entries)
    return len(entries)
