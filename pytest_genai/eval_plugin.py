"""Hooks active only with --genai-config: collect cases, gather results, then hand over to the application: the
checks before the first case (startup.py), the run record (session.py, record.py), its publication (publish.py)
and the terminal summary (report/terminal.py reads a SessionOutcome)."""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from _pytest.pathlib import bestrelpath

from pytest_genai import dryrun, publish, repeats, resume, startup
from pytest_genai.compare.measure import CompareOptions
from pytest_genai.config import ConfigError
from pytest_genai.interrupts import Interrupts
from pytest_genai.items import CaseItem, EvalSetFile, marker_tags
from pytest_genai.record import capture_env
from pytest_genai.report.terminal import Line, SessionOutcome, write_session_summary
from pytest_genai.runlog import Tracking
from pytest_genai.session import EvalSession
from pytest_genai.shard.merge import merge_if_last
from pytest_genai.shard.select import ShardError, check_group, default_group, parse_shard, shard_of
from pytest_genai.tracking.envlock import EnvLockError
from pytest_genai.tracking.journal import Journal
from pytest_genai.tracking.local import write_config_and_prompt
from pytest_genai.tracking.mlflow_client import resolve_uri
from pytest_genai.tracking.warm import WarmTracker
from pytest_genai.types import CaseResult

BUILD_FAILED = "building the pipeline"  # how a build error starts: an xdist worker's case results carry it

RESULT_ATTR = "genai_result"  # plain data on the report: survives xdist's serialisation
WORKER_TAGS = "genai_pipeline_tags"  # sent once per worker in workeroutput (xdist's way), not with every report


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class EvalPlugin:
    def __init__(self, config: pytest.Config, session: EvalSession, outermost: bool = False) -> None:
        self.config = config
        self.state = session
        self.eval_path = session.eval_set.path.resolve()
        self.file_nodeid = bestrelpath(config.rootpath, self.eval_path)
        self.selected: set[str] | None = None
        self.env: Any = None
        self.git: Any = None
        self.published: publish.Published | None = None  # the session's end: where the run went
        self.prompt_check_error: str | None = None
        self.build_failure: str | None = None  # xdist: the pipeline built on no worker (no run is recorded)
        self.warm: Any = None  # tracking.warm.WarmTracker: MLflow imported beside the cases, logs the run folder
        self.register_blocked: str | None = None  # registry.register_on_pass: why this session will not register
        self.baseline: Any = None  # compare.baseline.Baseline, resolved at session start (controller only)
        self.journal: Journal | None = None  # the run folder from the first finished case on (controller only)
        self.journal_error: str | None = None  # why there is none (the run folder is then written at the end)
        self.interrupts = Interrupts(outermost)  # SIGTERM as Ctrl-C; a second one does not cost the record
        self.resumed: resume.Resumable | None = None  # --genai-resume: the interrupted run this session completes
        self.estimate: Any = None  # runlog.CostEstimate made before any call (budget:, dryrun_plugin.py)
        self._journal_lock = threading.Lock()  # cases finish on pool threads and are reported on the main one
        self.workers = int(config.getoption("numprocesses", None) or 0) if not is_worker(config) else 0
        session.under_xdist = is_worker(config) or bool(self.workers)
        session.hook = config.hook
        for tag in sorted({t for c in session.eval_set.cases for t in marker_tags(c.tags)}):
            config.addinivalue_line("markers", f"{tag}: eval-set tag (pytest-genai)")
        self.shard, self.group = self._shard_options()
        self._add_eval_set_to_args()
        if self.tracking_enabled and not is_worker(config) and not self._dry_run():
            # from here on MLflow's import and store set-up run beside collection and the cases
            self.warm = WarmTracker.start(self.tracking_uri)

    def _shard_options(self) -> tuple[tuple[int, int] | None, str | None]:
        """--genai-shard I/N and the group it belongs to (--genai-group, else from GitHub Actions' run id)."""
        spec, group = self.config.getoption("genai_shard", None), self.config.getoption("genai_group", None)
        try:
            shard = parse_shard(str(spec)) if spec is not None else None
            group = check_group(str(group)) if group else None
            if group is not None and shard is None:
                raise ShardError("--genai-group goes with --genai-shard I/N (it names the eval the shards belong to)")
            if shard is not None and group is None:
                group = default_group(os.environ)
                if group is None:
                    raise ShardError("--genai-shard needs --genai-group ID (the eval its shards belong to; in GitHub "
                                     "Actions it defaults to $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT)")
        except ShardError as exc:
            raise pytest.UsageError(str(exc)) from None
        return shard, group

    @property
    def shard_label(self) -> str | None:
        return f"{self.shard[0]}/{self.shard[1]}" if self.shard else None

    # -- collection ---------------------------------------------------------------------------
    def _add_eval_set_to_args(self) -> None:
        """With no explicit arguments (testpaths or the current folder), collect the eval set too,
        without naming it. Explicit arguments are an explicit selection and are left alone."""
        if self.config.args_source == pytest.Config.ArgsSource.ARGS:
            return
        invocation_dir = self.config.invocation_params.dir
        for arg in self.config.args:
            target = (invocation_dir / arg.split("::", 1)[0]).resolve()
            if target == self.eval_path or target in self.eval_path.parents:
                return
        self.config.args.append(str(self.eval_path))

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        if file_path.name == self.eval_path.name and file_path.resolve() == self.eval_path:
            # An explicit node id keeps ids stable when the eval set lies outside the rootdir.
            return EvalSetFile.from_parent(parent, path=file_path, nodeid=self.file_nodeid)
        return None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
        """--genai-shard I/N: the cases of other shards are deselected (the terminal counts them); --genai-resume:
        the cases the interrupted run finished. Other tests stay."""
        if self.shard is None and self.resumed is None:
            return

        done = set(self.resumed.finished) if self.resumed is not None else set()
        keep, drop = [], []
        for item in items:
            case = item.case if isinstance(item, CaseItem) else None
            skip = case is not None and (case.id in done or (self.shard is not None and shard_of(case.id, self.shard[1]) != self.shard[0]))
            (drop if skip else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Build the pipeline once, before the first case, so a bad model pin or factory stops the run
        with one clear error instead of failing every case (and its load time is not case latency)."""
        cases = [i for i in session.items if isinstance(i, CaseItem)]
        self.selected = {i.case.id for i in cases}
        if self._dry_run() or not cases:
            return

        san = self.state.sanitizer
        try:
            self.state.pipeline
        except ConfigError as exc:
            message = san.text(str(exc))
        except Exception as exc:  # the reason goes on the first line too: the one CI's summary shows
            message = startup.build_failure(exc, f"{BUILD_FAILED} {self.state.config.pipeline.factory!r}", san)
        else:
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None and not is_worker(self.config):
                tr.write_line(f"genai: execution plan: {self.state.plan.describe()}")
            if not is_worker(self.config):  # xdist workers each collect every case: they run only theirs
                skipped = {i.case.id for i in cases if i.get_closest_marker("skip") is not None}
                self.state.pending = [i.case for i in cases if i.case.id not in skipped]
            return
        if is_worker(self.config):  # a worker cannot stop the session: each item reports it instead
            self.state.build_error = message
            return
        raise pytest.UsageError(message)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """On the xdist controller, which collects nothing itself: what the workers selected."""
        prefix = self.file_nodeid + "::"
        self.selected = {i[len(prefix):] for i in ids if i.startswith(prefix)}

    def _dry_run(self) -> bool:
        opt = self.config.option
        return bool(opt.collectonly or getattr(opt, "setuponly", False) or getattr(opt, "setupplan", False)
                    or getattr(opt, "genai_dry_run", False))

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        s = self.state
        prompt = f", prompt {s.prompt.ref} ({s.prompt.hash[:12]})" if s.prompt else ""
        lines = [
            f"genai: config {s.config.path.name} (config_hash {s.config.hash[:12]}), pipeline {s.config.pipeline.factory}{prompt}",
            f"genai: eval set {self.file_nodeid}: {len(s.eval_set)} cases (sha256 {s.eval_set.sha256[:12]}), seed {s.seed}",
        ]
        if self.workers:
            lines.append("genai: execution plan: pytest-xdist workers, each running its share one case at a time")
        if (note := repeats.header(s.config, s.repeat, s.policy)) is not None:
            lines.append(note)
        if self.resumed is not None:
            lines.append(f"genai: resuming {self.resumed.run_dir.name}: {len(self.resumed.finished)} of "
                         f"{len(s.eval_set)} cases finished there; running the others into the same run folder")
        if self.shard is not None:
            lines.append(f"genai: shard {self.shard_label} of eval group {self.group}: a child run; gates reported, "
                         f"{'enforced (--genai-enforce-gates)' if self.config.getoption('genai_enforce_gates') else 'not enforced'}"
                         f" (`pytest-genai merge {self.group}` enforces them on the whole eval)")
        if not s.sanitizer.redact_pii:
            lines.append("genai: safety.redact is false: PII is kept as is in results (secrets are still masked)")
        elif not s.sanitizer.keyed:
            lines.append("genai: redaction placeholders are UNKEYED (set safety.redact_key: ${ENV} to key them); tagged genai.redaction=unkeyed")
        if s.prompt_lock_note:
            lines.append(f"genai: {s.prompt_lock_note}")
        if self.register_blocked:  # set by pytest_sessionstart, which runs before the terminal asks for the header
            lines.append(f"genai: registry.register_on_pass: this session will not register: {self.register_blocked}")
        return lines

    # -- session start: env and prompt-store checks (controller only) ---------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Fail fast on what can be checked before any case runs (startup.py): the lock, the results folder, the
        --genai-markdown path, the store, the prompt against the store, what registering needs, the baseline."""
        if is_worker(self.config):
            return
        cfg, san = self.state.config, self.state.sanitizer
        try:
            self.env, self.git = capture_env(cfg)
        except EnvLockError as exc:
            raise pytest.UsageError(f"{exc} (env.lock_file in {cfg.path.name})") from None
        if self._dry_run():
            return
        try:
            startup.check_results_folder(cfg)
            startup.check_markdown_path(self.config.getoption("genai_markdown", None), self.config.invocation_params.dir)
            if self.tracking_enabled:
                startup.check_tracking_store(self.tracking_uri, san)
                if self.state.prompt is not None:
                    self.prompt_check_error = startup.check_prompt_against_store(
                        self.state.prompt, self.tracking_uri, self.experiment, san)
            if self.register_wanted:
                self.register_blocked = startup.check_registry(
                    cfg, uri=self.tracking_uri, tracking_enabled=self.tracking_enabled, env=self.env, git=self.git,
                    sanitizer=san, explicit=bool(self.config.getoption("genai_register")))
            ref, where = self._baseline_ref()
            if ref is not None:
                base_dir = self.config.invocation_params.dir if where == "--genai-baseline" else cfg.base_dir
                self.baseline = startup.fetch_baseline(ref, where, config=cfg, uri=self.tracking_uri, base_dir=base_dir,
                                                       eval_set=self.state.eval_set,
                                                       intersect=self.compare_options.intersect, sanitizer=san)
            if self.config.getoption("genai_resume", None):
                self._resume(str(self.config.getoption("genai_resume")))
        except (startup.StartError, resume.ResumeError) as exc:
            raise pytest.UsageError(str(exc)) from None
        self.interrupts.install()
        self.state.on_finished = lambda result: self._journal(result, None)  # each case as it finishes, in any order

    def _resume(self, ref: str) -> None:
        """--genai-resume: the interrupted run's finished cases become this session's, its folder its journal."""
        s, cfg = self.state, self.state.config
        if self.workers or self.shard is not None:
            raise resume.ResumeError(f"{resume.FLAG} runs without -n and --genai-shard (resume a shard's run folder "
                                     "in a plain session)")
        root = cfg.resolve_path("tracking.results_dir")
        assert root is not None
        run = resume.find(ref, results_dir=root, base_dir=self.config.invocation_params.dir, uri=self.tracking_uri,
                          download=self.tracking_enabled)
        resume.check_same(run, config_hash=cfg.hash, eval_set_hash=s.eval_set.sha256,
                          prompt_hash=s.prompt.hash if s.prompt else None, env_lock_hash=self.env.lock_hash,
                          repeat=(s.repeat, s.execution().pass_policy))
        for result in run.record.results:
            s.add_result(result)
        s.started_at = run.record.started_at
        self.resumed = run
        self.journal = Journal.reopen(run.run_dir, s.running_record(self.env, self.git, tracking=self._tracking()))

    def _baseline_ref(self) -> tuple[str | None, str]:
        """The baseline asked for and where it was asked (flag wins over the config key)."""
        flag = self.config.getoption("genai_baseline")
        if flag:
            return str(flag), "--genai-baseline"
        ref = self.state.config.get("compare.baseline")
        return (str(ref) if ref else None), "compare.baseline"

    @property
    def compare_options(self) -> Any:
        return CompareOptions.from_config(self.state.config, intersect=bool(self.config.getoption("genai_baseline_intersect")),
                                          require_baseline=bool(self.config.getoption("genai_require_baseline")))

    @property
    def register_wanted(self) -> bool:
        return bool(self.config.getoption("genai_register") or self.state.config.get("registry.register_on_pass"))

    @property
    def tracking_enabled(self) -> bool:
        return bool(self.state.config.get("tracking.enabled", True))

    @property
    def tracking_uri(self) -> str | None:
        uri = (self.config.getoption("genai_tracking_uri") or self.state.config.get("tracking.uri")
               or os.environ.get("MLFLOW_TRACKING_URI") or None)
        return resolve_uri(uri, self.state.config.base_dir if uri == self.state.config.get("tracking.uri") else Path.cwd())

    @property
    def experiment(self) -> str:
        return str(self.state.config.get("tracking.experiment"))

    # -- running ------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if call.when == "call" and isinstance(item, CaseItem) and item.result is not None:
            setattr(report, RESULT_ATTR, item.result.to_dict())
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, RESULT_ATTR, None)
        if data is not None and report.when == "call":
            result = CaseResult.from_dict(data)
            self.state.add_result(result)
            if not is_worker(self.config) and self.env is not None:
                self._journal(result, data)

    def _journal(self, result: CaseResult, plain: Any) -> None:
        """Each finished case on disk as it finishes (tracking/journal.py); the folder opens with the first one."""
        with self._journal_lock:
            self._open_journal()
        if self.journal is not None:
            self.journal.append(result, plain)

    def _open_journal(self) -> None:
        if self.journal is None and self.journal_error is None:
            cfg = self.state.config
            root = cfg.resolve_path("tracking.results_dir")
            assert root is not None
            try:
                record = self.state.running_record(self.env, self.git, tracking=self._tracking(), workers=self.workers,
                                                   shard=self.shard_label, group=self.group)
                self.journal = Journal.open(root, cfg.hash, record,
                                            write_inputs=lambda run_dir: write_config_and_prompt(run_dir, self.state))
            except Exception as exc:  # the run folder is then written at the end, as before
                self.journal_error = self.state.sanitizer.text(f"{type(exc).__name__}: {exc}")

    def _tracking(self) -> Tracking:
        return Tracking(uri=self.state.sanitizer.secrets_only().text(self.tracking_uri), experiment=self.experiment)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """On the xdist controller: the tags only a worker that built the pipeline knows."""
        self.state.worker_tags.update(getattr(node, "workeroutput", {}).get(WORKER_TAGS) or {})

    # -- session end: aggregate, write locally, log, gate -------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before MLflow's own plugin closes its session run: we nest under it
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # our handler counts every signal: one that lands inside pytest's own KeyboardInterrupt handling leaves
        # pytest's exit status unset, yet the session was interrupted
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or self.interrupts.interrupted
        if interrupted:
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        self.interrupts.session_interrupted = interrupted
        self.interrupts.hold()  # until the run folder holds the final record
        try:
            self._finish(session, exitstatus, interrupted)
        finally:
            self.interrupts.release()

    def _finish(self, session: pytest.Session, exitstatus: int, interrupted: bool) -> None:
        self.state.shutdown(wait=not interrupted)  # interrupted: the cases in flight are not waited for
        if is_worker(self.config):
            if hasattr(self.config, "workeroutput"):
                self.config.workeroutput[WORKER_TAGS] = self.state.pipeline_tags()
            return
        if self.env is None or self._dry_run():
            return
        ran = bool(self.state.results or self.state.finished)  # a pool's finished cases, reported to pytest or not
        if not self.selected and not ran:
            return  # no case was selected (or collection failed): there is no eval run to record
        if not ran and exitstatus in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR,
                                      pytest.ExitCode.INTERRUPTED):
            return  # the session stopped before any case ran (pipeline did not build, collection errors)
        unbuilt = [r.error for r in self.state.results.values() if (r.error or "").startswith(BUILD_FAILED)]
        if unbuilt and len(unbuilt) == len(self.state.results):  # xdist: as without it, no eval ran, none is recorded
            self.build_failure = unbuilt[0].splitlines()[0]  # type: ignore[union-attr]
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            self._discard_journal()
            return
        stopped = bool(session.shouldstop or session.shouldfail)
        enforce = bool(self.config.getoption("genai_enforce_gates"))
        san = self.state.sanitizer
        record = self.state.finish(self.env, self.git, enforce=enforce, selected=self.selected, stopped_early=stopped,
                                   interrupted=interrupted, tracking=self._tracking(), workers=self.workers,
                                   baseline=self.baseline, compare=self.compare_options, shard=self.shard_label,
                                   group=self.group)
        if self.resumed is not None:
            record = replace(record, tags={**record.tags, **resume.resumed_tags(self.resumed)})
        record = dryrun.with_estimate(record, self.estimate)  # the estimate vs the actual figures

        def after_local() -> bool:
            self.interrupts.release()
            return not self.interrupts.skip_tracking

        self.published = out = publish.publish(self.state, record, self.env, tracking=self.tracking_enabled,
                                               uri=self.tracking_uri, experiment=self.experiment, warm=self.warm,
                                               hook=self.config.hook, journal=self.journal, after_local=after_local)
        if out.interrupted or self.interrupts.interrupted:
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        if self.journal_error:
            out.lines.append(Line(f"journal: the run folder was written at the end only ({self.journal_error})", "yellow"))
        if self.interrupts.skip_tracking and self.tracking_enabled and out.run_dir is not None:
            out.lines.append(Line(f"interrupted while recording: not logged to MLflow; `pytest-genai upload "
                                  f"{out.run_dir}` logs it", "yellow"))
        if self.shard and out.run_id and out.tracking_error is None and self.config.getoption("genai_auto_merge"):
            assert self.group is not None
            merge_if_last(out, group=self.group, shards=self.shard[1], config_path=self.state.config.path,
                                  uri=self.tracking_uri, experiment=self.experiment, sanitizer=san)
        if ((out.record.gates_enforced and not out.record.gates_passed) or out.record.errors or out.failed) \
                and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        written = publish.write_markdown(out, self.state.comparison, option=self.config.getoption("genai_markdown", None),
                                         here=self.config.invocation_params.dir, sanitizer=san)
        if not written and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(trylast=True, specname="pytest_sessionfinish")
    def pytest_sessionfinish_register(self, session: pytest.Session) -> None:  # the "pytest_" prefix: pytest reads it
        """After every other sessionfinish (this plugin's verdict and markdown, other plugins' own checks): a version
        comes only from a session whose exit status is final and 0, whatever failed it (a gate, an `expect` case, an
        ordinary test collected beside the cases). The terminal summary, which prints the outcome, runs after this."""
        if is_worker(self.config) or self.published is None or not self.register_wanted:
            return
        error = publish.register(self.published, config=self.state.config, prompt=self.state.prompt,
                                 uri=self.tracking_uri, sanitizer=self.state.sanitizer, blocked=self.register_blocked,
                                 exitstatus=int(session.exitstatus))
        if error and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _discard_journal(self) -> None:
        """No eval ran (the pipeline built nowhere): no run is recorded, so neither is the journal's folder."""
        if self.journal is not None:
            self.journal.close()
            shutil.rmtree(self.journal.run_dir, ignore_errors=True)
            self.journal = None

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.interrupts.hold(quiet=True)  # closing: a late Ctrl-C only cuts the wait short, without a traceback
        try:
            if self.journal is not None and not self.journal.closed:
                self.journal.close(final=False)  # no final record was written: the folder reads as interrupted
            self.state.discard_replay_copy()
            if self.warm is not None:
                self.warm.close()
        finally:
            self.interrupts.restore()
        if not is_worker(config):  # an interrupted session's process is to end: ExitWatchdog
            self.interrupts.closed(self.published.run_dir if self.published is not None else None)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.env is None or self._dry_run():
            return
        out = self.published
        outcome = SessionOutcome(prompt_check_error=self.prompt_check_error, build_failure=self.build_failure,
                                 tracking_enabled=self.tracking_enabled)
        if out is not None:
            outcome = replace(outcome, record=out.record, run_dir=out.run_dir, tracking_error=out.tracking_error,
                              local_error=out.local_error, hook_error=out.hook_error, lines=tuple(out.lines))
        write_session_summary(terminalreporter, outcome, sanitizer=self.state.sanitizer, hook=self.config.hook)
