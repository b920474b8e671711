"""The execution plan: after collection, one decision on how the selected cases run — one at a time,
a thread pool of N, batches of B, or an xdist worker's share — from the run-time options and what the
pipeline declares (pipelines.base.Capabilities), never from provider names. Each strategy is a small
runner behind one protocol (xdist's scheduler shape); items then report one by one in collection order."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from pytest_genai.threads import DaemonPool, wait_result
from pytest_genai.types import Case, CaseResult


@dataclass(frozen=True)
class Plan:
    kind: str  # sequential | pool | batches | worker
    size: int = 1
    reason: str = ""  # why not the faster strategy that was asked for (shown in the header)
    isolated: bool = False  # eval.isolate: process: each case in a child process (isolate.py)

    def describe(self) -> str:
        what = {"sequential": "one case at a time", "pool": f"a pool of {self.size}",
                "batches": f"batches of {self.size}", "worker": "this xdist worker's share, one at a time"}[self.kind]
        if self.isolated:
            what += ", each in a child process (eval.isolate: process)"
        return what + (f" ({self.reason})" if self.reason else "")


def make_plan(caps: Any, *, concurrency: int, batch_size: int, repeat: int, under_xdist: bool,
              custom: bool = False, isolated: bool = False) -> Plan:
    """`caps`: the pipeline's Capabilities. Repeats and sampling keep their per-call seeding; a pipeline
    that does not declare `concurrent = True` is never put on a pool (process-wide RNGs are shared
    by threads: its answers would depend on N). `isolated`: one case at a time, each in a child process."""
    if isolated:
        asked = concurrency > 1 or batch_size > 1
        why = "--genai-concurrency and llm.batch_size are not used with it" if asked else ""
        return Plan("worker" if under_xdist else "sequential", 1, why, isolated=True)
    if under_xdist:
        why = "under pytest-xdist each worker runs its share one at a time" if concurrency > 1 or batch_size > 1 else ""
        return Plan("worker", 1, why)
    if batch_size > 1 and repeat == 1 and caps.batch:
        return Plan("batches", batch_size)
    reason = ""
    if batch_size > 1 and not caps.batch:
        reason = "llm.batch_size not used: the pipeline does not batch (greedy decoding with a batching provider only)"
    elif batch_size > 1 and repeat > 1:
        reason = "llm.batch_size not used with --genai-repeat: each repeat is its own seeded call"
    if concurrency > 1:
        if caps.concurrent:
            return Plan("pool", concurrency, reason)
        who = "the custom pipeline" if custom else "the pipeline's provider"
        reason = (f"--genai-concurrency {concurrency} not used: {who} does not declare `concurrent = True` "
                  "(thread-safe, seeded per call), so its process-wide RNGs would make answers depend on N")
    return Plan("sequential", 1, reason)


RunOne = Callable[[Case, bool], CaseResult]  # (case, seed the process-wide RNGs?) -> result
RunBatch = Callable[[Sequence[Case]], dict[str, CaseResult]]


class CaseRunner(Protocol):
    def start(self, cases: Sequence[Case]) -> None: ...

    def result(self, case: Case) -> CaseResult: ...

    def shutdown(self, wait: bool = True) -> None: ...


class SequentialRunner:
    """One case at a time, in the item's own call: the process-wide RNGs are seeded per case."""

    def __init__(self, run_one: RunOne) -> None:
        self.run_one = run_one

    def start(self, cases: Sequence[Case]) -> None:
        pass

    def result(self, case: Case) -> CaseResult:
        return self.run_one(case, True)

    def shutdown(self, wait: bool = True) -> None:
        pass


class PoolRunner:
    """Every selected case submitted to a bounded pool when the first item runs (nothing is paid for when
    collection fails); items wait for their own case. Seeds reach the call, not the global RNGs."""

    def __init__(self, run_one: RunOne, size: int) -> None:
        self.run_one, self.size = run_one, size
        self._pool: DaemonPool | None = None
        self._futures: dict[str, Future[CaseResult]] = {}

    def start(self, cases: Sequence[Case]) -> None:
        self._pool = DaemonPool(self.size, "genai-case")  # daemon threads: a hung case never holds the exit
        for case in cases:
            self._futures[case.id] = self._pool.submit(self.run_one, case, False)

    def result(self, case: Case) -> CaseResult:
        future = self._futures.pop(case.id, None)
        return wait_result(future) if future is not None else self.run_one(case, False)

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)  # -x or Ctrl-C: queued cases never start
            self._pool = None


class BatchRunner:
    """Batches of `size` in collection order on one background thread (the model already uses every core)."""

    def __init__(self, run_batch: RunBatch, run_one: RunOne, size: int) -> None:
        self.run_batch, self.run_one, self.size = run_batch, run_one, size
        self._pool: DaemonPool | None = None
        self._futures: dict[str, Future[dict[str, CaseResult]]] = {}

    def start(self, cases: Sequence[Case]) -> None:
        self._pool = DaemonPool(1, "genai-batch")
        for i in range(0, len(cases), self.size):
            chunk = list(cases[i:i + self.size])
            future = self._pool.submit(self.run_batch, chunk)
            for case in chunk:
                self._futures[case.id] = future

    def result(self, case: Case) -> CaseResult:
        future = self._futures.pop(case.id, None)
        return wait_result(future)[case.id] if future is not None else self.run_one(case, True)

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None


def runner_for(plan: Plan, run_one: RunOne, run_batch: RunBatch) -> CaseRunner:
    if plan.kind == "pool":
        return PoolRunner(run_one, plan.size)
    if plan.kind == "batches":
        return BatchRunner(run_batch, run_one, plan.size)
    return SequentialRunner(run_one)


def timeout_error(case_id: str, limit: float, batch: int = 1) -> str:
    """The error of a case that ran out of eval.case_timeout_s (its thread is abandoned, its result dropped)."""
    where = f" (in a batch of {batch}, which had {limit * batch:g} s)" if batch > 1 else ""
    return f"TimeoutError: case {case_id} did not finish within eval.case_timeout_s = {limit:g} s{where}"
