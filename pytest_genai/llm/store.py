"""The response cache's sqlite store: entries keyed by a request hash, and which keys each run used.

One sqlite connection per `ResponseCache`, guarded by a lock (calls take microseconds next to an LLM call);
WAL mode, `timeout=30` and one-statement transactions, so several processes (pytest-xdist workers) can share
the file.

Runs: a shared cache holds the answers of every config that used it; a cassette must hold only its own run's.
Each use (a hit, or a recorded answer) is noted in the `uses` table under the run's token: the identity of the
process that exports the cassette, i.e. this process, or in an xdist worker its controller (the parent), with the
process's start time so a reused pid is another run. `begin_run` (at pipeline build) marks that a run uses the
file and, in the process that owns the token, forgets what an earlier session of that process noted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pytest_genai.llm.base import Generation, LLMError

SCHEMA_VERSION = 1
USES_KEPT_DAYS = 7  # notes of runs that never exported (crashed, no cassette) are dropped after this
_RUN_MARK = ""  # the key of the row that says "this run began with this cache", even before any call


# -- keys ------------------------------------------------------------------------------------------
def normalise(value: Any) -> Any:
    """JSON-stable form: 0.0 and 0 key alike (YAML gives either), tuples are lists, mappings dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    raise TypeError(f"cannot key a {type(value).__name__} value")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_key(material: Mapping[str, Any], digest: Callable[[bytes], str] = sha256_hex) -> str:
    """`digest` (64 hex) of the canonical JSON of the RAW material: sha256, or a keyed HMAC (`Sanitizer.digest`)."""
    canonical = json.dumps(normalise(material), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return digest(canonical.encode())


# -- entries ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheEntry:
    key: str
    request: dict[str, Any]
    generation: Generation
    created_at: str  # ISO 8601, UTC, when the answer was recorded


def generation_json(g: Generation) -> dict[str, Any]:
    data = asdict(g)
    data.pop("cached")  # a property of how an answer is served, not of the answer
    return data


def generation_from(data: Mapping[str, Any]) -> Generation:
    if not isinstance(data.get("text"), str) or not isinstance(data.get("input_tokens"), int) or not isinstance(data.get("output_tokens"), int):
        raise ValueError("a generation needs text (str), input_tokens and output_tokens (int)")
    latency = data.get("latency_ms")
    return Generation(data["text"], data["input_tokens"], data["output_tokens"],
                      system_fingerprint=data.get("system_fingerprint"),
                      latency_ms=float(latency) if latency is not None else None)


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- runs ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux); "" where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name
    except (OSError, IndexError):
        return ""


_RUN_TOKEN: str | None = None  # set per session (set_run_token); None: this process's own


def own_run_token() -> str:
    """This process, with its start time (a reused pid is another run)."""
    pid = os.getpid()
    return f"{pid}@{_started(pid)}"


def set_run_token(token: str | None) -> None:
    """At session start: an xdist worker's uses belong to its controller's run (the process that merges the workers'
    results and writes the cassette), whose token the controller hands each worker as plain data (workerinput)."""
    global _RUN_TOKEN
    _RUN_TOKEN = token


def run_token() -> str:
    """The run a use of the cache belongs to: the process that exports its cassette."""
    return _RUN_TOKEN or own_run_token()


# -- storage ---------------------------------------------------------------------------------------
def _with_retry(op: Callable[[], Any], seconds: float = 30.0) -> Any:
    """Switching to WAL takes an exclusive lock that sqlite's busy timeout does not wait for: several
    processes opening a new cache at once (xdist workers) retry instead of failing "database is locked"."""
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        try:
            return op()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class ResponseCache:
    """The sqlite store. Thread-safe; several processes may open the same file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        try:
            _with_retry(lambda: self._conn.execute("PRAGMA journal_mode=WAL"))  # type: ignore[union-attr]
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, request TEXT NOT NULL, "
                "generation TEXT NOT NULL, created_at TEXT NOT NULL) WITHOUT ROWID")
            # which run used which key (a hit or a recorded answer): what its cassette holds. Format 1 readers ignore it.
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS uses (run TEXT NOT NULL, key TEXT NOT NULL, at TEXT NOT NULL, "
                "PRIMARY KEY (run, key)) WITHOUT ROWID")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise LLMError(f"response cache {self.path} has format {version}; this pytest-genai reads {SCHEMA_VERSION}")
        except BaseException:
            self._conn.close()
            raise

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LLMError(f"response cache {self.path} is closed")
        return self._conn

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            row = self._db().execute("SELECT key, request, generation, created_at FROM responses WHERE key = ?", (key,)).fetchone()
        return _entry(row) if row else None

    def put(self, request: Mapping[str, Any], generation: Generation, created_at: str | None = None,
            key: str | None = None) -> str:
        """Store (or overwrite) the answer to `request` (sanitized) under `key` (of the raw request); returns the key."""
        key = key or request_key(request)
        row = (key, dumps(normalise(request)), dumps(generation_json(generation)), created_at or now_iso())
        with self._lock:
            self._db().execute(_UPSERT, row)
        return key

    def put_many(self, entries: Sequence[CacheEntry]) -> None:
        """One transaction: an import is all or nothing."""
        rows = [(e.key, dumps(normalise(e.request)), dumps(generation_json(e.generation)), e.created_at) for e in entries]
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT, rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def entries(self, keys: set[str] | None = None) -> list[CacheEntry]:
        """Every entry (or those of `keys`), sorted by key."""
        with self._lock:
            rows = self._db().execute("SELECT key, request, generation, created_at FROM responses ORDER BY key").fetchall()
        return [_entry(r) for r in rows if keys is None or r[0] in keys]

    # -- which run used what -----------------------------------------------------------------------
    def begin_run(self, *, owner: bool, run: str | None = None) -> None:
        """A run starts using this file. `owner`: this process exports the run's cassette (not an xdist worker),
        so notes under its token are an earlier session's of this same process: forgotten."""
        run = run or run_token()
        cutoff = (datetime.now(timezone.utc) - timedelta(days=USES_KEPT_DAYS)).isoformat(timespec="seconds")
        with self._lock:
            db = self._db()
            if owner:
                db.execute("DELETE FROM uses WHERE run = ?", (run,))
            db.execute("DELETE FROM uses WHERE at < ?", (cutoff,))
            db.execute("INSERT OR IGNORE INTO uses (run, key, at) VALUES (?, ?, ?)", (run, _RUN_MARK, now_iso()))

    def note_use(self, key: str, run: str | None = None) -> None:
        """This run used `key` (answered from it, or recorded it)."""
        with self._lock:
            self._db().execute("INSERT OR IGNORE INTO uses (run, key, at) VALUES (?, ?, ?)", (run or run_token(), key, now_iso()))

    def run_keys(self, run: str | None = None) -> set[str] | None:
        """The keys `run` (default: this process's) used; None when it never used this file."""
        with self._lock:
            rows = self._db().execute("SELECT key FROM uses WHERE run = ?", (run or run_token(),)).fetchall()
        if not rows:
            return None
        return {r[0] for r in rows if r[0] != _RUN_MARK}

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def begin_run(path: str | os.PathLike[str], *, owner: bool) -> None:
    """At pipeline build: a run (this process's, or an xdist worker's controller's) starts using the cache at `path`;
    its cassette will hold the entries it uses. See `ResponseCache.begin_run`."""
    with ResponseCache(path) as cache:
        cache.begin_run(owner=owner)


_UPSERT = ("INSERT INTO responses (key, request, generation, created_at) VALUES (?, ?, ?, ?) "
           "ON CONFLICT(key) DO UPDATE SET request = excluded.request, generation = excluded.generation, "
           "created_at = excluded.created_at")


def _entry(row: tuple[str, str, str, str]) -> CacheEntry:
    return CacheEntry(row[0], json.loads(row[1]), generation_from(json.loads(row[2])), row[3])
