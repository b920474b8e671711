"""The journal: a session's run folder from its first finished case on, so a signal, a crash or an OOM kill costs at
most the case in flight.

* `run.json` says `running` (the record without metrics, written when the journal opens) until the session
  writes the final record over it (`complete`, `partial`, `stopped`, `interrupted`);
* `results.jsonl` gets each finished case as one line, in the record's own format, with one `write(2)` on an
  `O_APPEND` descriptor: the line is in the kernel's page cache when `append` returns, so a killed process loses
  none; an fsync follows within SYNC_S (a daemon thread), against the machine itself going down; a write that
  fails (a full disk) is cut back to the line's start, so no torn line is left;
* `.lock` is locked (`flock`) as long as the session lives; the OS releases it however the process ends, so a
  reader tells a live run from one that died: `run_folder.writer_alive` (a `running` record with no live writer
  reads as `interrupted`, runlog.read_run).

The session's end writes the final `results.jsonl` (eval-set order) and `run.json` into the same folder."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from pytest_genai.run_folder import LOCK_FILE, RESULTS_FILE, lock_writer
from pytest_genai.runlog import RunRecord, plain_line, result_line, write_record
from pytest_genai.tracking.local import new_run_dir
from pytest_genai.types import CaseResult

SYNC_S = 0.5  # an appended line is fsync'd at most this long after it was written (the bound is 1 s)


class Journal:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.appended = 0
        self.errors: list[str] = []
        self._ids: set[str] = set()  # each case once: it may come as it finishes and again as pytest reports it
        self._lock_fd = lock_writer(run_dir / LOCK_FILE)
        self._fd: int | None = os.open(run_dir / RESULTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._end = os.fstat(self._fd).st_size  # where the next line starts: a failed write is cut back to it
        self._mutex = threading.Lock()
        self._unsynced = 0
        self._stop = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, name="genai-journal-sync", daemon=True)
        self._syncer.start()

    @classmethod
    def open(cls, root: Path, config_hash: str, record: RunRecord, write_inputs: Any = None) -> "Journal":
        """A new run folder under `root` holding `record` (status `running`); `write_inputs(run_dir)` adds the
        resolved config and the prompt before the first case is journaled."""
        run_dir = new_run_dir(root, config_hash)
        journal = cls(run_dir)
        write_record(run_dir, record)  # first: whatever stops the inputs' writing, the folder is a run folder
        if write_inputs is not None:
            write_inputs(run_dir)
        return journal

    @classmethod
    def reopen(cls, run_dir: Path, record: RunRecord) -> "Journal":
        """An interrupted run's folder, continued (--genai-resume): its lock taken, `record` (status `running`)
        written over its record, new cases appended after the ones it finished."""
        journal = cls(run_dir)
        journal._end_with_a_whole_line()
        write_record(run_dir, record)
        return journal

    def _end_with_a_whole_line(self) -> None:
        """A resumed folder whose last line was cut short (its session died mid-write): that line goes (read_results
        skips it: its case did not finish), so the next case starts a line of its own; a whole last line that only
        lacks its newline gets it."""
        assert self._fd is not None
        data = (self.run_dir / RESULTS_FILE).read_bytes()
        if data and not data.endswith(b"\n"):
            start = data.rfind(b"\n") + 1
            try:
                json.loads(data[start:])
            except ValueError:
                os.ftruncate(self._fd, start)
            else:
                os.write(self._fd, b"\n")
            self._end = os.fstat(self._fd).st_size

    @property
    def unsynced(self) -> int:
        """Lines written but not yet fsync'd."""
        return self._unsynced

    def append(self, result: CaseResult, plain: Mapping[str, Any] | None = None) -> None:
        """One line, one write; never raises into the session (a failure is kept in `errors`, said at the end).
        `plain`: the result's `to_dict()` when the caller has it already (the plugin does: it came that way)."""
        if result.id in self._ids:  # journaled as it finished; pytest reports it later
            return
        try:
            data = ((plain_line(plain) if plain is not None else result_line(result)) + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            self.errors.append(f"case {result.id}: its result could not be journaled: {exc}")
            return
        with self._mutex:
            if self._fd is None or result.id in self._ids:
                return
            try:
                written = os.write(self._fd, data)
                while written < len(data):  # a short write (rare, a full disk): the rest, still appended
                    written += os.write(self._fd, data[written:])
            except OSError as exc:
                self.errors.append(f"case {result.id}: {self.run_dir / RESULTS_FILE}: {exc}")
                try:  # the part that fit goes: no torn line is left for a reader (or the next case) to meet
                    os.ftruncate(self._fd, self._end)
                except OSError:
                    pass  # read_results skips a torn last line all the same
                return
            self._end += len(data)
            self.appended += 1
            self._unsynced += 1
            self._ids.add(result.id)

    def sync(self) -> None:
        with self._mutex:
            if self._fd is not None and self._unsynced:
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass
                self._unsynced = 0

    def _sync_loop(self) -> None:
        while not self._stop.wait(SYNC_S):
            self.sync()

    def close(self, final: bool = True) -> None:
        """After the final record is written (`final`: the lock file goes too, it is not the run's) or when the
        session cannot write one (the folder then reads as interrupted): fsync, then release the lock."""
        self._stop.set()
        self.sync()
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if self._lock_fd is not None:
            if final:
                (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    @property
    def closed(self) -> bool:
        return self._lock_fd is None


def wait_synced(journal: Journal, timeout: float = 2.0) -> bool:
    """For tests and callers that must know: every appended line fsync'd within `timeout`."""
    deadline = time.monotonic() + timeout
    while journal.unsynced and time.monotonic() < deadline:
        time.sleep(0.01)
    return journal.unsynced == 0
