"""The eval session: the pinned inputs loaded once, the pipeline built once, the execution plan, and the
run record at the end. pytest hooks (eval_plugin.py) only wire into it."""

from __future__ import annotations

import platform
import threading
import time
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Any, Callable, Sequence

import pytest_genai
from pytest_genai import builtin_hooks, names, optional
from pytest_genai.compare.judge import load_judge_spec
from pytest_genai.config import GenaiConfig
from pytest_genai.context import PipelineContext, wants_context
from pytest_genai.evalset import EvalSet, EvalSetError, load_eval_set
from pytest_genai.input_limits import not_a_file
from pytest_genai.llm.cache import case_label
from pytest_genai.llm.store import begin_run
from pytest_genai.metrics.registry import METRICS
from pytest_genai.pipelines import build_pipeline, capabilities, warm_up_pipeline
from pytest_genai.isolate import ProcessRunner, fork_available
from pytest_genai.plan import CaseRunner, Plan, SequentialRunner, make_plan, runner_for, timeout_error
from pytest_genai.prompts import PromptError, PromptTemplate, load_prompt, read_lock, unbumped_edit_message
from pytest_genai.record import build_record, cache_tags, dirty_state, now, running_record
from pytest_genai.registries import PIPELINES
from pytest_genai.policy import Policy, PolicyError, parse_policy
from pytest_genai.repeats import run_sampled, sampling
from pytest_genai.resolve import import_target
from pytest_genai.runlog import COMPLETE, INTERRUPTED, PARTIAL, STOPPED, Execution, Provenance, RunRecord, Tracking
from pytest_genai.runtime import Runtime
from pytest_genai.safety.guard import Guard
from pytest_genai.sanitize import Sanitizer, one_line
from pytest_genai.scoring import as_answer, deferred_toxicity, no_result, run_case
from pytest_genai.threads import CallTimeout, call_with_timeout
from pytest_genai.types import Case, CaseResult


class SessionSetupError(Exception):
    """Something in the pinned inputs is wrong; the message says what and where."""


@dataclass
class EvalSession:
    config: GenaiConfig
    eval_set: EvalSet
    prompt: PromptTemplate | None
    repeat: int = 1
    runtime: Runtime = field(default_factory=Runtime)
    policy: Policy = field(default_factory=lambda: Policy("all"))  # eval.pass_policy: a case's verdict over its repeats
    prompt_lock_note: str | None = None  # why the unbumped-prompt check against a lock did not run
    results: dict[str, CaseResult] = field(default_factory=dict)
    worker_tags: dict[str, str] = field(default_factory=dict)
    build_error: str | None = None  # set on an xdist worker whose pipeline failed to build
    under_xdist: bool = False
    started_at: str = field(default_factory=now)
    errors: list[str] = field(default_factory=list)
    error_details: dict[str, str] = field(default_factory=dict)  # case id -> the sanitized trace its error heads
    hook: Any = None  # pytest's hook relay (set by the plugin): pytest_genai_case_scores
    on_finished: Any = None  # called with each result as its case finishes (a pool thread): the journal
    finished: dict[str, CaseResult] = field(default_factory=dict)  # ... and kept, reported to pytest or not
    _pipeline: Any = None
    _guard: Any = None
    _plan: Plan | None = None
    _runner: CaseRunner | None = None
    _pass_seed: bool = False
    _custom: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pipeline_tags: dict[str, str] | None = None
    pending: list[Case] = field(default_factory=list)  # started on the runner when the first case runs
    comparison: dict[str, Any] | None = None  # comparison.json of the finished run (sanitized), when compared

    @classmethod
    def from_config(cls, config: GenaiConfig, repeat: int | None = None, runtime: Runtime | None = None) -> "EvalSession":
        """`repeat`: --genai-repeat, else eval.repeat."""
        missing_extras = optional.config_problems(config)
        if missing_extras:
            raise SessionSetupError("\n".join(missing_extras))
        eval_path = config.resolve_path("eval.set")
        assert eval_path is not None
        if not eval_path.is_file():
            raise SessionSetupError(str(config.error("eval.set", f"the eval set {eval_path} {not_a_file(eval_path)}")))
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
        prompt, note = None, None
        if config.get("prompt") is not None:
            try:
                prompt = load_prompt(config.resolve_path("prompt.dir"), config.get("prompt.id"), config.get("prompt.version"))  # type: ignore[arg-type]
                lock_path = config.resolve_path("prompt.lock_file")
                assert lock_path is not None
                if not lock_path.is_file():
                    note = (f"prompt lock {lock_path.name} not found: an edit of {prompt.ref} without a version bump is "
                            "caught only against the tracking store (run `pytest-genai lock-prompts CONFIG`)")
                    msg = None
                else:
                    known = read_lock(lock_path).get(prompt.ref)
                    msg = unbumped_edit_message(prompt, known, f"the prompt lock {lock_path.name}") if known else None
            except PromptError as exc:
                raise SessionSetupError(str(config.error("prompt.id", str(exc)))) from None
            if msg:
                raise SessionSetupError(msg)

        load_judge_spec(config)  # compare.judge: an LLM judge's provider, temperature and prompt (ConfigError)
        if config.get("eval.isolate") == "process" and not fork_available():
            raise SessionSetupError(str(config.error("eval.isolate", "eval.isolate: process needs fork(), which this "
                                                                     "platform does not have (use none)")))
        try:  # the repeats it is for are checked by the plugin (session_policy); merge reads what the shards ran
            policy = parse_policy(config.get("eval.pass_policy"))
        except PolicyError as exc:
            raise SessionSetupError(str(config.error("eval.pass_policy", str(exc)))) from None
        return cls(config, eval_set, prompt, repeat or int(config.get("eval.repeat") or 1), runtime or Runtime(), policy,
                   note)

    # -- what the session is built from ----------------------------------------------------------
    @property
    def seed(self) -> int:
        return int(self.config.get("seed"))

    def seed_for(self, case: Case) -> int:
        return self.context.seed_for(case)

    @property
    def sampled(self) -> bool:
        """Repeats are statistics with sampling (llm.temperature > 0), else the determinism check."""
        return self.repeat > 1 and sampling(self.config)

    @cached_property
    def _score(self) -> Callable[..., CaseResult]:
        return partial(run_sampled, repeat=self.repeat, policy=self.policy) if self.sampled \
            else partial(run_case, repeat=self.repeat)

    @cached_property
    def sanitizer(self) -> Any:
        return Sanitizer.from_config(self.config)

    @cached_property
    def context(self) -> Any:
        return PipelineContext(self.config, self.prompt, self.runtime, self.sanitizer)

    @property
    def pricing(self) -> tuple[float, float]:
        return (float(self.config.get("llm.pricing.input_per_1k_tokens", 0.0) or 0.0),
                float(self.config.get("llm.pricing.output_per_1k_tokens", 0.0) or 0.0))

    @property
    def pipeline(self) -> Any:
        """Built on first use: an xdist controller, which runs no case, never loads a model."""
        with self._lock:
            if self._pipeline is None:
                self._build()
            return self._pipeline

    def _build(self) -> None:
        spec = self.config.pipeline.factory
        self._custom = spec not in PIPELINES
        if self._custom and self.runtime.cache_mode == "replay":
            try:
                takes_ctx = wants_context(import_target(spec))
            except Exception:
                takes_ctx = True  # build_pipeline reports the import problem itself
            if not takes_ctx:
                raise self.config.error(self.config.factory_key, (
                    f"--genai-cache replay cannot replay {spec!r}: a `factory(config)` pipeline calls its model itself. "
                    "Take the context instead (`def factory(ctx)`) and call `ctx.llm`, which the cache wraps"))
        if self.runtime.cache_mode in ("read-write", "record") and self.runtime.cache_path is not None:
            begin_run(self.runtime.cache_path, owner=not self.under_xdist)  # its cassette: the entries this run uses
        limit = self.config.get("eval.build_timeout_s")
        if limit:
            try:
                pipeline = call_with_timeout(self._build_and_warm, float(limit), name="genai-build")
            except CallTimeout:
                raise TimeoutError(f"its factory and warm-up did not finish within eval.build_timeout_s = "
                                   f"{float(limit):g} s") from None
        else:
            pipeline = self._build_and_warm()
        guard = Guard.from_config(self.config)  # after the factory: it may register a classifier
        guard.probe()  # the classifier's import (~3 s) is not case latency
        caps = capabilities(pipeline)
        self._pass_seed = caps.accepts_seed
        isolated = self.config.get("eval.isolate") == "process"
        self._plan = make_plan(caps, concurrency=self.runtime.concurrency, batch_size=int(self.config.get("llm.batch_size") or 1),
                               isolated=isolated,
                               repeat=self.repeat, under_xdist=self.under_xdist, custom=self._custom)
        if isolated:  # the child is forked from here on: it inherits the built, warmed-up pipeline
            self._runner = ProcessRunner(self._run_case, self._failed, self._case_timeout, timeout_error)
        else:
            self._runner = runner_for(self._plan, self._run_one, self._run_batch)
        self._guard, self._pipeline = guard, pipeline

    def _build_and_warm(self) -> Any:
        pipeline = build_pipeline(self.context)
        self._probe_prompt(pipeline)
        warm_up_pipeline(pipeline, self.context)  # loads and first calls, before the first timed case
        return pipeline

    def _probe_prompt(self, pipeline: Any) -> None:
        """Render the prompt once with the first case's variables: an undefined variable stops the run here."""
        variables = getattr(pipeline, "probe_variables", None)
        if self.prompt is None or variables is None or not self.eval_set.cases or not hasattr(self.prompt, "probe"):
            return
        try:
            self.prompt.probe(variables(self.eval_set.cases[0]))
        except PromptError as exc:
            raise self.config.error("prompt.id", str(exc)) from None

    @property
    def plan(self) -> Plan:
        self.pipeline
        assert self._plan is not None
        return self._plan

    # -- running --------------------------------------------------------------------------------
    def run(self, case: Case) -> CaseResult:
        runner = self._runner
        if runner is None:
            self.pipeline
            runner = self._runner
        assert runner is not None
        if self.pending:  # started by the first case that runs: nothing is paid for if collection failed
            pending, self.pending = self.pending, []
            if not isinstance(runner, SequentialRunner) and len(pending) > 1:
                runner.start(pending)
        return runner.result(case)

    def _run_one(self, case: Case, seed_globals: bool, answered: Any = None) -> CaseResult:
        """A case; with eval.case_timeout_s, on its own thread, a TimeoutError result once the limit passes."""
        limit = self._case_timeout
        if limit is None:
            return self._done(self._run_case(case, seed_globals, answered))
        try:
            result = call_with_timeout(self._run_case, limit, case, seed_globals, answered, name=f"genai-case-{case.id}")
        except CallTimeout:
            result = no_result(case, self.seed_for(case), self.sanitizer, timeout_error(case.id, limit))
        return self._done(result)

    def _done(self, result: CaseResult) -> CaseResult:
        """A finished case, as it finishes (a pool runs ahead of the items that report in order): kept for the
        record and handed to `on_finished` (the journal), so an interrupt loses none of them."""
        self.finished[result.id] = result
        if self.on_finished is not None:
            self.on_finished(result)
        return result

    def _failed(self, case: Case, error: str) -> CaseResult:
        return no_result(case, self.seed_for(case), self.sanitizer, error)

    @cached_property
    def _case_timeout(self) -> float | None:
        limit = self.config.get("eval.case_timeout_s")
        return float(limit) if limit else None

    def _run_case(self, case: Case, seed_globals: bool, answered: Any = None) -> CaseResult:
        try:
            with case_label(case.id):  # a replay miss names the case
                result = self._score(self._pipeline, case, self.seed_for(case), pricing=self.pricing,
                                     seed_globals=seed_globals, pass_seed=self._pass_seed, guard=self._guard,
                                     sanitizer=self.sanitizer, extra_scores=self._extra_scores, answered=answered)
        except Exception as exc:  # a guard or metric failure is this case's error, shown sanitized, not a traceback
            result = no_result(case, self.seed_for(case), self.sanitizer,
                               f"scoring the case failed: {self.sanitizer.exception(exc, 6)}")
        if result.error is not None and "\n" in result.error:  # recorded: the headline; the trace: the terminal's
            short = one_line(result.error)
            if ": pytest_genai." not in f": {short}":  # our own errors say all in their message: no trace to add
                self.error_details[case.id] = result.error
            result = replace(result, error=short)
        return result

    def _run_batch(self, cases: Sequence[Case]) -> dict[str, CaseResult]:
        """With eval.case_timeout_s a batch has the sum of its cases' limits."""
        limit = self._case_timeout
        if limit is None:
            out = self._generate_batch(cases)
        else:
            try:
                out = call_with_timeout(self._generate_batch, limit * len(cases), cases, name="genai-batch-call")
            except CallTimeout:
                out = {c.id: no_result(c, self.seed_for(c), self.sanitizer, timeout_error(c.id, limit, len(cases)))
                       for c in cases}
        return {k: self._done(v) for k, v in out.items()}

    def _generate_batch(self, cases: Sequence[Case]) -> dict[str, CaseResult]:
        """Generate for the whole batch, then score each case as usual; a failed batch fails its cases."""
        started = time.perf_counter()
        try:
            outs = list(self._pipeline.batch(list(cases), [self.seed_for(c) for c in cases]))
            if len(outs) != len(cases):
                raise ValueError(f"batch() returned {len(outs)} answers for {len(cases)} cases")
        except Exception as exc:  # noqa: BLE001 - becomes each case's error, like a failing pipeline call
            error = self.sanitizer.exception(exc, 6)
            elapsed = (time.perf_counter() - started) * 1000
            return {c.id: self._run_case(c, False, (None, elapsed, error)) for c in cases}
        elapsed = (time.perf_counter() - started) * 1000
        return {c.id: self._run_case(c, False, as_answer(o, elapsed)) for c, o in zip(cases, outs)}

    def _extra_scores(self, case: Case, answer: Any, result: CaseResult) -> dict[str, float]:
        """Every `pytest_genai_case_scores` implementation, the built-in one (registered metrics) first."""
        if self.hook is None:  # a session outside pytest: only the built-ins
            parts = [builtin_hooks.pytest_genai_case_scores(case=case, answer=answer, result=result)]
        else:
            parts = self.hook.pytest_genai_case_scores(case=case, answer=answer, result=result)
        scores: dict[str, float] = {}
        for extra in parts:
            for k, v in (extra or {}).items():
                try:
                    scores[k] = float(v)
                except (TypeError, ValueError):
                    raise ValueError(f"pytest_genai_case_scores returned {k!r}: {v!r:.100}, not a number") from None
        clash = sorted(k for k in scores if k in self._result_metrics)
        if clash:  # em, f1, latency...: computed from the result's own fields, a score would be ignored by them
            raise ValueError(f"pytest_genai_case_scores returned {', '.join(map(repr, clash))}: the name of a built-in "
                             "metric computed from the case result, not from scores; name the score differently (or "
                             "replace the metric: register_metric(NAME, replace=True))")
        return scores

    @cached_property
    def _result_metrics(self) -> frozenset[str]:
        """Metrics computed from a case result's own fields (em, f1, latency...), not from its scores: the registry is
        complete once cases run (conftests and `pytest_genai_register` come first), so this is read once, not per case."""
        return frozenset(n for n in METRICS if METRICS.get(n).per_case is None)

    def shutdown(self, wait: bool = True) -> None:
        """Queued cases never start; `wait=False` (an interrupt): the cases in flight are not waited for."""
        if self._runner is not None:
            self._runner.shutdown(wait)

    def discard_replay_copy(self) -> None:
        """After the run record (an LLM judge reads the cache at session end): the replayed cassette's copy."""
        path = self.runtime.cache_path
        if self.runtime.cassette is not None and path is not None and path.parent.name.startswith("genai-replay-"):
            import shutil

            shutil.rmtree(path.parent, ignore_errors=True)  # the per-process copy of a replayed cassette

    def add_result(self, result: CaseResult) -> None:
        self.results[result.id] = result

    # -- the run record -------------------------------------------------------------------------
    def running_record(self, env: Any, git: Any, *, tracking: Tracking, workers: int = 0, shard: str | None = None,
                       group: str | None = None) -> RunRecord:
        """What the journal's run.json says while the session runs (status `running`)."""
        return running_record(config=self.config, provenance=self.provenance(env, git),
                              execution=replace(self.execution(workers), shard=shard, group=group),
                              started_at=self.started_at, tracking=tracking, sanitizer=self.sanitizer,
                              cases_total=len(self.eval_set))

    def finish(self, env: Any, git: Any, *, enforce: bool, selected: set[str] | None = None, stopped_early: bool = False,
               interrupted: bool = False, tracking: Tracking | None = None, workers: int = 0, baseline: Any = None,
               compare: Any = None, shard: str | None = None, group: str | None = None) -> RunRecord:
        """Aggregate into the run record. A selected case without a result (skipped, crashed worker) counts as
        errored, unless the session stopped early: `interrupted` (Ctrl-C, SIGTERM) makes the run `interrupted`,
        -x / --maxfail makes it `stopped`; either way its unrun cases are not counted.
        CIs are computed over the cases; with `baseline` (compare.baseline.Baseline, resolved at session start) the
        paired comparison too, kept as `self.comparison` (comparison.json, sanitized) and summarised in the record.
        A shard (`shard` "I/N") is never `complete`: its gates are reported, not enforced, unless `enforce`."""
        order = {c.id: i for i, c in enumerate(self.eval_set.cases)}
        for case_id, done in list(self.finished.items()):  # finished on the pool, never reported (interrupted)
            self.results.setdefault(case_id, done)
        selected = set(self.results) if selected is None else selected | set(self.results)
        missing = [c for c in self.eval_set.cases if c.id in selected and c.id not in self.results]
        results = list(self.results.values())
        stopped_early = stopped_early or interrupted
        if not stopped_early:
            results += [no_result(c, self.seed_for(c), self.sanitizer) for c in missing]
        results.sort(key=lambda r: order.get(r.id, len(order)))
        results = deferred_toxicity(results, lambda: self._guard or Guard.from_config(self.config))
        errors = list(self.errors) + self._replay_problems(results)
        # (a pipeline that built nowhere never gets here: the plugin records no run for it, with xdist or without)
        if interrupted and missing:
            status = INTERRUPTED
        elif stopped_early and missing:
            status = STOPPED
        elif len(selected) < len(self.eval_set) or shard is not None:
            status = PARTIAL
        else:
            status = COMPLETE
        execution = replace(self.execution(workers), shard=shard, group=group)
        record, comparison = build_record(
            results, config=self.config, cases_total=len(self.eval_set), eval_set_hash=self.eval_set.sha256,
            provenance=self.provenance(env, git), execution=execution, status=status, errors=errors,
            started_at=self.started_at, enforce=enforce, tracking=tracking or Tracking(), sanitizer=self.sanitizer,
            compare=compare, baseline=baseline, runtime=self.runtime,
            extra_tags={**cache_tags(self.runtime.cache_mode, results), **self.pipeline_tags()})
        self.comparison = comparison
        return record

    def _replay_problems(self, results: list[CaseResult]) -> list[str]:
        """A custom pipeline under replay must answer through ctx.llm; else the live pipeline answered."""
        if self.runtime.cache_mode != "replay" or not self._custom or not results:
            return []
        if any(r.cached for r in results):
            return []
        return [f"--genai-cache replay: the pipeline {self.config.pipeline.factory!r} never answered from the cache "
                "(it did not call ctx.llm), so nothing was replayed and the live pipeline answered; call ctx.llm "
                "(the cached LLM) or run without replay"]

    def provenance(self, env: Any, git: Any) -> Provenance:
        tags = self.pipeline_tags()
        model_hashes = {k: v for k, v in tags.items() if k.endswith("_sha256")}
        return Provenance(
            config_path=self.config.path.name, config_hash=self.config.hash, pipeline=self.config.pipeline.factory,
            seed=self.seed, prompt_id=self.prompt.id if self.prompt else None,
            prompt_version=self.prompt.version if self.prompt else None, prompt_hash=self.prompt.hash if self.prompt else None,
            eval_set_path=str(self.config.get("eval.set")), eval_set_hash=self.eval_set.sha256,
            index_fingerprint=tags.get("index.fingerprint"), model_hashes=model_hashes,
            env_lock_file=(env.lock_path or env.wanted).name if (env.lock_path or env.wanted) is not None else None,
            env_lock_hash=env.lock_hash,
            env_drift=env.drift if env.lock_hash is not None else None, env_drift_lines=tuple(env.lines()[:50]),
            git_commit=git.commit, git_branch=git.branch, **dirty_state(git, self.config.get("tracking.results_dir")),
            python=platform.python_version(), platform=platform.platform(),
            pytest_genai_version=pytest_genai.__version__,
            redaction=("keyed" if self.sanitizer.keyed else "unkeyed") if self.sanitizer.redact_pii else "off")

    def execution(self, workers: int = 0) -> Execution:
        p = self._plan
        kind, size, reason = (p.kind, p.size, p.reason) if p else ("worker" if workers else "sequential", 1, "")
        return Execution(kind, size, reason, self.repeat, self.runtime.cache_mode, workers,
                         pass_policy=str(self.policy) if self.sampled else None)

    def cache_tags(self, results: Sequence[CaseResult]) -> dict[str, str]:
        return cache_tags(self.runtime.cache_mode, results)

    def pipeline_tags(self) -> dict[str, str]:
        """Tags only the process that built the pipeline knows; xdist workers send them once (workeroutput)."""
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
            self._pipeline_tags = tags
        return self._pipeline_tags
