"""Threads that never hold the process hostage. `concurrent.futures.ThreadPoolExecutor` joins its workers when the
interpreter exits, so one hung case (a pipeline stuck in a socket read) kept a Ctrl-C'd session alive forever;
these are daemon threads: the session ends when its main thread does, and a case still running is abandoned.

* `DaemonPool(size)`: `submit` returns a `concurrent.futures.Future`; `shutdown(wait, cancel_futures)` as the
  executor's;
* `call_with_timeout(fn, timeout_s, *args)`: `fn(*args)` on its own daemon thread; `CallTimeout` when it has not
  returned within `timeout_s` (the thread is abandoned: Python cannot stop it, its result is dropped)."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class CallTimeout(Exception):
    """`call_with_timeout`: the call did not return in time."""


class DaemonPool:
    def __init__(self, size: int, name: str = "genai-pool") -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._pending: list[Future[Any]] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            self._pending.append(future)
        self._queue.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - delivered to whoever waits on the future
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Queued calls are cancelled with `cancel_futures`; `wait`: until the running ones return."""
        if cancel_futures:
            with self._lock:
                for future in self._pending:
                    future.cancel()  # a running or finished one stays as it is
                self._pending.clear()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


WAIT_SLICE_S = 0.2  # a wait is cut into slices: between them the main thread runs its signal handlers (Ctrl-C)


def wait_result(future: Future[T]) -> T:
    """`future.result()`, but Ctrl-C reaches a main thread waiting on it: an untimed wait on a lock is not
    interrupted by a signal here (seen: a session with a hung case on its pool ignored Ctrl-C)."""
    while True:
        try:
            return future.result(timeout=WAIT_SLICE_S)
        except FutureTimeout:
            continue


def call_with_timeout(fn: Callable[..., T], timeout_s: float, *args: Any, name: str = "genai-call") -> T:
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not done.wait(min(WAIT_SLICE_S, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            raise CallTimeout(f"did not return within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
