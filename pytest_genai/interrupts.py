"""Signals during an eval session (the controller's main thread): SIGTERM is handled like Ctrl-C (CI cancels a job
with SIGTERM), and a second interrupt while the session is finishing does not cost the run its record.

* the first SIGINT or SIGTERM raises KeyboardInterrupt, as Ctrl-C does: pytest stops and the session ends as
  `interrupted` with every finished case;
* a second one while the run record is being written is held back: the record is written (its local run
  folder), MLflow logging is skipped (`pytest-genai upload RUN` logs it later), and the session exits;
* a third one raises KeyboardInterrupt at once: the journal already holds every finished case.

Handlers are installed only where the signal still has Python's default handling (never over a user's own), and
put back at the end of the session.

An interrupted session's process ends (`ExitWatchdog`): once the session has closed, with its record written, a
process still alive EXIT_GRACE_S later (held by a non-daemon thread a pipeline started, an exit handler that waits
forever) says which threads hold it, prints their stacks and exits with pytest's INTERRUPTED status."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_genai.threads import CallTimeout, call_with_timeout

ABORT_AFTER_HELD = 2  # the held-back interrupt that no longer waits for the record (the third in all)
EXIT_GRACE_S = 15.0  # from an interrupted session's close to its process's forced end (the normal end is at once)
POLL_S = 0.25
PYTEST_PARTS = (f"{os.sep}_pytest{os.sep}", f"{os.sep}pluggy{os.sep}")  # a frame of pytest's own machinery


class Interrupts:
    def __init__(self, outermost: bool = False) -> None:
        self.outermost = outermost  # the session's process ends with it (not a pytester session inside another's)
        self.session_interrupted = False  # by a signal, or a KeyboardInterrupt raised in a case
        self.count = 0  # signals received
        self.held = 0  # of them, held back while the run folder was being written
        self.holding = False
        self.quiet = False
        self._saved: dict[int, Any] = {}

    @property
    def interrupted(self) -> bool:
        return self.count > 0

    @property
    def skip_tracking(self) -> bool:
        """Interrupted again while finishing: the user wants out, the run folder is enough."""
        return self.held > 0

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
            if signal.getsignal(sig) is default:
                self._saved[sig] = default
                signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, handler)
        self._saved.clear()

    def hold(self, quiet: bool = False) -> None:
        """The run record is being written: interrupts wait (and say so) until `release`. `quiet`: the session is
        closing (its record is written): a signal then only ends the wait, with no message and no traceback."""
        self.holding = True
        self.quiet = quiet

    def release(self) -> None:
        """The run folder holds the final record: an interrupt from here on stops whatever runs (MLflow logging)."""
        self.holding = False

    def closed(self, run: Path | None) -> None:
        """The session has closed, its record written: an interrupted one's process is to end (ExitWatchdog)."""
        if self.outermost and (self.session_interrupted or self.interrupted):
            arm_exit_watchdog(int(pytest.ExitCode.INTERRUPTED), str(run) if run is not None else None)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        if not self.holding:
            self.holding = True  # from the first interrupt on, the next ones wait for the record
            raise KeyboardInterrupt(name)
        self.held += 1
        if self.quiet:
            return
        if self.held >= ABORT_AFTER_HELD:
            raise KeyboardInterrupt(f"{name} again")
        what = "again" if self.count > 1 else "while the run is being recorded"
        sys.stderr.write(f"\ngenai: {name} {what}: writing the run folder with the finished cases, not logging to "
                         "MLflow (once more to abort at once; the journal holds every finished case)\n")
        sys.stderr.flush()


# pytest sessions configured in this process and not yet closed: pytester runs one inside another, and only the
# outermost one's process is about to end
_open_sessions = 0
_watchdog: "ExitWatchdog | None" = None


def session_opened() -> bool:
    """A pytest session configures (every session, eval or not): an armed watchdog stands down (its session's
    caller went on to run another). True when this is the process's only open session."""
    global _open_sessions
    disarm_exit_watchdog()
    _open_sessions += 1
    return _open_sessions == 1


def session_closed() -> None:
    global _open_sessions
    _open_sessions = max(0, _open_sessions - 1)


def arm_exit_watchdog(code: int, run: str | None, grace_s: float | None = None) -> "ExitWatchdog":
    global _watchdog
    disarm_exit_watchdog()
    _watchdog = ExitWatchdog(code, run, EXIT_GRACE_S if grace_s is None else grace_s)
    return _watchdog


def disarm_exit_watchdog() -> None:
    global _watchdog
    if _watchdog is not None:
        _watchdog.disarm()
        _watchdog = None


def exit_watchdog_armed() -> bool:
    return _watchdog is not None and not _watchdog.off.is_set()


class ExitWatchdog:
    """Ends the process of an interrupted session that has closed but does not exit. It acts only while the process
    is leaving (its main thread past `threading`'s shutdown: joining threads, running exit handlers) or still
    inside pytest; a caller that ran `pytest.main` and went on with its own work is never ended (the watchdog
    stands down). Past the interpreter's own shutdown no Python thread runs: faulthandler's timer (a C thread)
    ends the process FALLBACK_S later (its stacks, exit status 1)."""

    FALLBACK_S = 5.0

    def __init__(self, code: int, run: str | None, grace_s: float) -> None:
        self.code, self.run, self.grace_s = code, run, grace_s
        self.off = threading.Event()
        self._stderr = os.dup(2)  # the terminal's, as the session closes (a capture may hold fd 2 later)
        faulthandler.dump_traceback_later(grace_s + self.FALLBACK_S, exit=True, file=self._stderr)
        threading.Thread(target=self._watch, name="genai-exit-watchdog", daemon=True).start()

    def disarm(self) -> None:
        if not self.off.is_set():
            self.off.set()
            faulthandler.cancel_dump_traceback_later()

    def _watch(self) -> None:
        deadline = time.monotonic() + self.grace_s
        main = threading.main_thread()
        while not self.off.wait(POLL_S):
            if main.is_alive() and _caller_went_on(main):
                self.disarm()  # not a process on its way out
            elif time.monotonic() >= deadline:
                self._end()
        os.close(self._stderr)

    def _end(self) -> None:
        holding = [t.name for t in threading.enumerate()
                   if not t.daemon and t.is_alive() and t is not threading.main_thread()]
        held = f" (held by non-daemon threads: {', '.join(holding)})" if holding else ""
        where = f"its run folder {self.run} is written" if self.run else "its finished cases are journaled"
        try:
            call_with_timeout(sys.stdout.flush, 1.0)  # what the session printed, unless stdout itself is stuck
        except (CallTimeout, OSError, ValueError, RuntimeError):  # RuntimeError: no new thread at shutdown
            pass
        os.write(self._stderr, (f"\ngenai: the session was interrupted and {where}, but the process was still "
                                f"running {self.grace_s:g} s after the session closed{held}; ending it (exit "
                                f"{self.code}). Where its threads are:\n").encode())
        faulthandler.dump_traceback(self._stderr, all_threads=True)
        os._exit(self.code)


def _caller_went_on(thread: threading.Thread) -> bool:
    """The thread runs code of its own, outside pytest. A process on its way out runs threading's `_shutdown`
    (joining threads, an executor's among them) or no Python code at all."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return False
    while frame is not None:
        code = frame.f_code
        if any(part in code.co_filename for part in PYTEST_PARTS):
            return False
        if code.co_name == "_shutdown" and os.path.basename(code.co_filename) == "threading.py":
            return False
        frame = frame.f_back
    return True
