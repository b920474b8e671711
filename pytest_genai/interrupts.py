"""Signals during an eval session (the controller's main thread): SIGTERM is handled like Ctrl-C (CI cancels a job
with SIGTERM), and a second interrupt while the session is finishing does not cost the run its record.

* the first SIGINT or SIGTERM raises KeyboardInterrupt, as Ctrl-C does: pytest stops and the session ends as
  `interrupted` with every finished case;
* a second one while the run record is being written is held back: the record is written (its local run
  folder), MLflow logging is skipped (`pytest-genai upload RUN` logs it later), and the session exits;
* a third one raises KeyboardInterrupt at once: the journal already holds every finished case.

Handlers are installed only where the signal still has Python's default handling (never over a user's own), and
put back at the end of the session."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

ABORT_AFTER_HELD = 2  # the held-back interrupt that no longer waits for the record (the third in all)


class Interrupts:
    def __init__(self) -> None:
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
