"""`eval.isolate: process`: each case runs in a child process, so a pipeline that segfaults, calls `os._exit` or is
killed (OOM) costs that case, recorded as an error naming the signal or exit code, not the session.

The child is forked from the session after the pipeline is built and warmed up (it inherits both: nothing is
built twice) and serves cases one at a time over a pipe (plain data: the case in, the result's dict out). When it
dies, the case it was running gets the error and the next case forks a fresh child from the session, which is
untouched. With `eval.case_timeout_s`, a case over the limit has its child killed (a real stop, where a thread can
only be abandoned). Needs `fork` (Linux, macOS); forking a process whose native libraries run their own thread
pools (torch's OpenMP) can hang the child: meant for API models and custom pipelines, and bounded by the timeout."""

from __future__ import annotations

import multiprocessing
import signal
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Sequence

from pytest_genai.types import Case, CaseResult

POLL_S = 0.05  # how often a waiting parent checks that its child still lives
RunCase = Callable[[Case, bool], CaseResult]
Fail = Callable[[Case, str], CaseResult]  # (case, error) -> the case's error result


def fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _serve(conn: Connection, run_case: RunCase) -> None:
    """The child: answer cases until told to stop (None) or the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the session's to handle; it stops this child
    _die_with_parent()
    while True:
        try:
            case = conn.recv()
        except (EOFError, OSError):
            return
        if case is None:
            return
        conn.send(run_case(case, True).to_dict())


def _die_with_parent() -> None:
    """Linux: the kernel kills this child when the session dies, however it dies (SIGKILL included), so a hung
    case never outlives its session. Elsewhere the child ends at its next case (the pipe is closed)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ProcessRunner:
    """One case at a time, each in the (forked) child; the process-wide RNGs are seeded per case in the child."""

    def __init__(self, run_case: RunCase, fail: Fail, timeout_s: float | None = None,
                 timeout_error: Callable[[str, float], str] | None = None) -> None:
        self.run_case, self.fail, self.timeout_s, self.timeout_error = run_case, fail, timeout_s, timeout_error
        self._proc: Any = None
        self._conn: Connection | None = None
        self.forks = 0

    def start(self, cases: Sequence[Case]) -> None:
        pass

    def _child(self) -> tuple[Any, Connection]:
        if self._proc is None or not self._proc.is_alive():
            ctx = multiprocessing.get_context("fork")
            parent, child = ctx.Pipe()
            self._proc = ctx.Process(target=_serve, args=(child, self.run_case), name="genai-isolated-case", daemon=True)
            self._proc.start()
            child.close()
            self._conn = parent
            self.forks += 1
        assert self._conn is not None
        return self._proc, self._conn

    def result(self, case: Case) -> CaseResult:
        proc, conn = self._child()
        try:
            conn.send(case)
        except (BrokenPipeError, OSError):
            return self._died(case, proc)
        started = time.monotonic()
        while True:
            try:
                ready = conn.poll(POLL_S)
            except (EOFError, OSError):
                return self._died(case, proc)
            if ready:
                try:
                    return CaseResult.from_dict(conn.recv())
                except (EOFError, OSError):
                    return self._died(case, proc)
            if not proc.is_alive():
                return self._died(case, proc)
            if self.timeout_s is not None and time.monotonic() - started > self.timeout_s:
                self._kill()
                message = self.timeout_error(case.id, self.timeout_s) if self.timeout_error else "TimeoutError"
                return self.fail(case, message)

    def _died(self, case: Case, proc: Any) -> CaseResult:
        proc.join(5)
        code = proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        self._drop()
        return self.fail(case, f"ChildProcessError: case {case.id}'s process {how} (eval.isolate: process; the session "
                               "goes on in a new one)")

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def shutdown(self, wait: bool = True) -> None:
        if self._proc is None:
            return
        if wait and self._conn is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(2)
        self._kill()
