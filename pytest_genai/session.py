"""The eval session: what one pytest session needs, built once, and the aggregation at the end."""

from __future__ import annotations

import platform
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from pytest_genai import names
from pytest_genai.config import GenaiConfig
from pytest_genai.evalset import EvalSet, load_eval_set
from pytest_genai.gates import GateResult, evaluate_gates
from pytest_genai.metrics import aggregate
from pytest_genai.prompts import PromptError, PromptTemplate, load_prompt, read_lock, unbumped_edit_message
from pytest_genai.runtime import Runtime
from pytest_genai.safety.guard import Guard, Redactor
from pytest_genai.seeding import case_seed
from pytest_genai.tracking.envlock import EnvReport, compare_env
from pytest_genai.tracking.gitinfo import GitInfo, git_info
from pytest_genai.types import Case, CaseResult


class SessionSetupError(Exception):
    """Something in the pinned inputs is wrong; the message says what and where."""


@dataclass(frozen=True)
class RunSummary:
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    gates: list[GateResult]
    partial: bool
    enforced: bool
    results: list[CaseResult]

    @property
    def gates_passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failing_gates(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]


@dataclass
class EvalSession:
    config: GenaiConfig
    eval_set: EvalSet
    prompt: PromptTemplate | None
    repeat: int = 1
    runtime: Runtime = field(default_factory=Runtime)
    results: dict[str, CaseResult] = field(default_factory=dict)
    worker_tags: dict[str, str] = field(default_factory=dict)
    build_error: str | None = None  # set on an xdist worker whose pipeline failed to build
    _pipeline: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _guard: Any = None
    _pipeline_tags: dict[str, str] | None = None
    pending: list[Case] = field(default_factory=list)  # cases to prefetch once the first case runs
    parallel_ok: bool = True  # False under xdist: no pool, no batches
    _futures: dict[str, Future[CaseResult]] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, config: GenaiConfig, repeat: int = 1, runtime: Runtime | None = None) -> "EvalSession":
        from pytest_genai.evalset import EvalSetError

        eval_path = config.resolve_path("eval.set")
        assert eval_path is not None
        if not eval_path.is_file():
            raise SessionSetupError(str(config.error("eval.set", f"the eval set {eval_path} does not exist")))
        try:
            eval_set = load_eval_set(eval_path)
        except EvalSetError as exc:
            raise SessionSetupError(str(exc)) from None
        pinned = config.get("eval.sha256")
        if pinned and pinned != eval_set.sha256:
            raise SessionSetupError(str(config.error(
                "eval.sha256",
                f"the eval set {eval_path} changed: its sha256 is {eval_set.sha256}, the config pins {pinned}. "
                "Changing the eval set mid-experiment makes runs incomparable; update the pin only on purpose.",
            )))
        prompt = None
        if config.get("prompt") is not None:
            try:
                prompt = load_prompt(config.resolve_path("prompt.dir"), config.get("prompt.id"), config.get("prompt.version"))  # type: ignore[arg-type]
                lock_path = config.resolve_path("prompt.lock_file")
                assert lock_path is not None
                known = read_lock(lock_path).get(prompt.ref)
                msg = unbumped_edit_message(prompt, known, f"the prompt lock {lock_path.name}") if known else None
            except PromptError as exc:
                raise SessionSetupError(str(config.error("prompt.id", str(exc)))) from None
            if msg:
                raise SessionSetupError(msg)
        return cls(config, eval_set, prompt, repeat, runtime or Runtime())

    @property
    def seed(self) -> int:
        return int(self.config.get("seed"))

    def seed_for(self, case: Case) -> int:
        return case_seed(self.seed, case.id)

    @property
    def pipeline(self) -> Any:
        """Built on first use: an xdist controller, which runs no case, never loads a model."""
        with self._lock:
            if self._pipeline is None:
                from pytest_genai.pipelines import build_pipeline

                pipeline = build_pipeline(self.config, self.prompt, self.runtime)
                guard = Guard.from_config(self.config)  # after the factory: it may register a classifier
                guard.probe()
                self._guard, self._pipeline = guard, pipeline
            return self._pipeline

    @cached_property
    def redactor(self) -> Redactor:
        return Redactor.from_config(self.config)

    @property
    def pricing(self) -> tuple[float, float]:
        return (float(self.config.get("llm.pricing.input_per_1k_tokens", 0.0) or 0.0),
                float(self.config.get("llm.pricing.output_per_1k_tokens", 0.0) or 0.0))

    @property
    def concurrency(self) -> int:
        """Local models run one case at a time: torch already uses every core, and its RNG is global."""
        if not self.parallel_ok or (self.config.get("llm.provider") == "hf_local"
                                    and str(self.config.get("pipeline")).startswith("builtin:")):
            return 1
        return max(1, self.runtime.concurrency)

    @property
    def batch_size(self) -> int:
        """hf_local batches greedy generation (llm.batch_size); batches follow collection order."""
        size = int(self.config.get("llm.batch_size") or 1)
        batchable = (self.parallel_ok and self.config.get("llm.provider") == "hf_local" and self.repeat == 1
                     and float(self.config.get("llm.temperature") or 0) == 0
                     and hasattr(getattr(self.pipeline, "llm", None), "generate_batch") and hasattr(self.pipeline, "batch"))
        return size if size > 1 and batchable else 1

    def prefetch(self, cases: list[Case]) -> None:
        """Start the selected cases on a bounded pool (or in batches, one thread); items then report one
        by one in collection order."""
        if len(cases) <= 1:
            return
        if self.batch_size > 1:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="genai-batch")
            for i in range(0, len(cases), self.batch_size):
                chunk = cases[i:i + self.batch_size]
                future = self._pool.submit(self._run_batch, chunk)
                for case in chunk:
                    self._futures[case.id] = future
            return
        if self.concurrency <= 1:
            return
        self.pipeline  # built once, before the threads start
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="genai-case")
        for case in cases:
            self._futures[case.id] = self._pool.submit(self._run, case, False)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # -x or Ctrl-C: queued cases never start
            self._pool = None
        path = self.runtime.cache_path
        if self.runtime.cassette is not None and path is not None and path.parent.name.startswith("genai-replay-"):
            import shutil

            shutil.rmtree(path.parent, ignore_errors=True)  # the per-process copy of a replayed cassette

    def run(self, case: Case) -> CaseResult:
        if self.pending:  # started by the first case that runs: nothing is paid for if collection failed
            pending, self.pending = self.pending, []
            self.prefetch([c for c in pending if c.id != case.id] if self.batch_size <= 1 else pending)
        future = self._futures.pop(case.id, None)
        if future is None:
            return self._run(case, True)
        result = future.result()
        return result[case.id] if isinstance(result, dict) else result

    def _run(self, case: Case, seed_globals: bool, pipeline: Any = None) -> CaseResult:
        from pytest_genai.llm.cache import case_label
        from pytest_genai.runner import run_case

        try:
            with case_label(case.id):  # a replay miss names the case
                result = run_case(pipeline or self.pipeline, case, self.seed_for(case), self.pricing, self.repeat,
                                  seed_globals, self._guard, self.redactor)
        except Exception as exc:  # a guard or metric failure is this case's error, shown redacted, not a traceback
            import traceback

            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:]).strip()
            result = _no_result(case, self.seed_for(case), self.redactor, f"scoring the case failed: {tb}")
        return self._scrub(result)

    def _run_batch(self, cases: list[Case]) -> dict[str, CaseResult]:
        """Generate for the whole batch, then score each case as usual; a failed batch fails its cases."""
        try:
            answers: dict[str, Any] = dict(zip([c.id for c in cases], self.pipeline.batch(cases)))
        except Exception as exc:  # noqa: BLE001 - becomes each case's error, like a failing pipeline call
            failure = exc

            def pipeline(case: Case) -> Any:
                raise failure
        else:
            def pipeline(case: Case) -> Any:
                return answers[case.id]
        return {c.id: self._run(c, False, pipeline) for c in cases}

    def _scrub(self, result: CaseResult) -> CaseResult:
        if self.config.secrets:  # a pipeline may echo its key in an error or an answer
            redact = self.config.redact
            result = replace(result, error=redact(result.error), answer=redact(result.answer), prompt=redact(result.prompt))
        return result

    def add_result(self, result: CaseResult) -> None:
        self.results[result.id] = result

    def summarize(self, env: EnvReport, git: GitInfo, enforce: bool, selected: set[str] | None = None,
                  stopped_early: bool = False) -> RunSummary:
        """Aggregate. A selected case without a result (skipped, crashed worker) counts as errored,
        unless the session stopped early (-x, Ctrl-C), which makes the run partial instead."""
        order = {c.id: i for i, c in enumerate(self.eval_set.cases)}
        selected = set(self.results) if selected is None else selected | set(self.results)
        missing = [c for c in self.eval_set.cases if c.id in selected and c.id not in self.results]
        results = list(self.results.values())
        if not stopped_early:
            results += [_no_result(c, self.seed_for(c), self.redactor) for c in missing]
        results.sort(key=lambda r: order.get(r.id, len(order)))
        metrics = aggregate(results, len(self.eval_set))
        metrics["env_drift"] = float(env.drift) if env.lock_hash is not None else float("nan")
        partial = len(selected) < len(self.eval_set) or (stopped_early and bool(missing))
        gates = evaluate_gates(self.config.get("gates") or {}, metrics)
        tags = self.tags(env, git)
        tags[names.TAG_PARTIAL] = str(partial).lower()
        tags[names.TAG_GATES_PASSED] = str(all(g.passed for g in gates)).lower()
        return RunSummary(metrics, self.config.params(), tags, gates, partial, enforce or not partial, results)

    def tags(self, env: EnvReport, git: GitInfo) -> dict[str, str]:
        tags = {
            "safety.redact": str(self.redactor.enabled).lower(),
            names.TAG_GIT_COMMIT: git.commit,
            names.TAG_GIT_DIRTY: "unknown" if git.dirty is None else str(git.dirty).lower(),
            names.TAG_GIT_BRANCH: git.branch,
            names.TAG_CONFIG_HASH: self.config.hash,
            names.TAG_EVAL_SET_HASH: self.eval_set.sha256,
            names.TAG_ENV_LOCK_HASH: env.lock_hash or "none",
            names.TAG_ENV_DRIFT: str(env.drift),
            names.TAG_ENV_PYTHON: platform.python_version(),
            names.TAG_ENV_PLATFORM: platform.platform(),
            names.TAG_SEED: str(self.seed),
        }
        if git.commit != "unknown":
            tags[names.TAG_MLFLOW_GIT_COMMIT] = git.commit
        tags.update(self.cache_tags())
        if self.prompt is not None:
            tags[names.TAG_PROMPT_ID] = self.prompt.id
            tags[names.TAG_PROMPT_VERSION] = self.prompt.version
            tags[names.TAG_PROMPT_HASH] = self.prompt.hash
        tags.update(self.pipeline_tags())
        return tags

    def cache_tags(self) -> dict[str, str]:
        answered = [r for r in self.results.values() if r.cached is not None]
        hits = sum(bool(r.cached) for r in answered)
        source = "measured" if hits == 0 else ("recorded" if hits == len(answered) else "mixed")
        tags = {"genai.cache_mode": self.runtime.cache_mode, "genai.latency_source": source,
                "genai.concurrency": str(self.concurrency)}
        if self.runtime.cache_mode != "off":
            tags.update({"genai.cache_hits": str(hits), "genai.cache_misses": str(len(answered) - hits)})
        return tags

    def pipeline_tags(self) -> dict[str, str]:
        """Tags only the process that built the pipeline knows; xdist workers send them with results."""
        return {**self.worker_tags, **self._built_tags()}

    def _built_tags(self) -> dict[str, str]:
        if self._pipeline is None:
            return {}
        if self._pipeline_tags is None:  # the pipeline is built once: so are its tags
            tags: dict[str, str] = {}
            model_sha = getattr(getattr(self._pipeline, "llm", None), "model_sha256", None)
            if model_sha:
                tags[names.TAG_MODEL_SHA256] = model_sha
            tags.update(getattr(self._pipeline, "tags", None) or {})  # e.g. index.fingerprint from builtin:rag
            tags["genai.batch_size"] = str(self.batch_size)
            self._pipeline_tags = tags
        return self._pipeline_tags


def _no_result(case: Case, seed: int, red: Redactor, error: str | None = None) -> CaseResult:
    return CaseResult(case.id, red.text(case.question) or "", None, tuple(red.text(a) or "" for a in case.answers),
                      0.0, 0.0, float("nan"), 0, 0, 0.0, seed,
                      error=red.text(error) or "no result: the item was selected but produced none (skipped, or its worker crashed)")


def capture_env(config: GenaiConfig) -> tuple[EnvReport, GitInfo]:
    return compare_env(config.resolve_path("env.lock_file")), git_info(config.base_dir)

