"""Hooks active only with --genai-config: collect cases, gather results, gate, track, report."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from _pytest.pathlib import bestrelpath

from pytest_genai.items import CaseItem, EvalSetFile
from pytest_genai.sanitize import headline
from pytest_genai.session import EvalSession, capture_env
from pytest_genai.types import CaseResult

BUILD_FAILED = "building the pipeline"  # how a build error starts: an xdist worker's case results carry it

RESULT_ATTR = "genai_result"  # plain data on the report: survives xdist's serialisation
WORKER_TAGS = "genai_pipeline_tags"  # sent once per worker in workeroutput (xdist's way), not with every report
# Eval-set tags become markers only when pytest can take them as such and they change nothing.
_MARKER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED_MARKERS = {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings"}


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def marker_tags(tags: tuple[str, ...]) -> list[str]:
    return [t for t in tags if _MARKER_NAME.match(t) and t not in _RESERVED_MARKERS]


class EvalPlugin:
    def __init__(self, config: pytest.Config, session: EvalSession) -> None:
        self.config = config
        self.state = session
        self.eval_path = session.eval_set.path.resolve()
        self.file_nodeid = bestrelpath(config.rootpath, self.eval_path)
        self.selected: set[str] | None = None
        self.env: Any = None
        self.git: Any = None
        self.record: Any = None
        self.run_dir: Path | None = None
        self.run_id: str | None = None
        self.tracking_error: str | None = None
        self.local_error: str | None = None
        self.prompt_check_error: str | None = None
        self.release_lines: list[Any] = []
        self.merge_failed = False  # the last shard merged its group and the whole eval's gates failed
        self.hook_error: str | None = None  # a pytest_genai_run_finished implementation raised (sanitized)
        self.build_failure: str | None = None  # xdist: the pipeline built on no worker (no run is recorded)
        self.warm: Any = None  # tracking.warm.WarmTracker: MLflow imported beside the cases, logs the run folder
        self.release_error: str | None = None
        self.register_blocked: str | None = None  # registry.register_on_pass: why this session will not register
        self.baseline: Any = None  # compare.baseline.Baseline, resolved at session start (controller only)
        self.workers = int(config.getoption("numprocesses", None) or 0) if not is_worker(config) else 0
        session.under_xdist = is_worker(config) or bool(self.workers)
        session.hook = config.hook
        for tag in sorted({t for c in session.eval_set.cases for t in marker_tags(c.tags)}):
            config.addinivalue_line("markers", f"{tag}: eval-set tag (pytest-genai)")
        self.shard, self.group = self._shard_options()
        self._add_eval_set_to_args()
        if self.tracking_enabled and not is_worker(config) and not self._dry_run():
            from pytest_genai.tracking.warm import WarmTracker

            # from here on MLflow's import and store set-up run beside collection and the cases
            self.warm = WarmTracker.start(self.tracking_uri)

    def _shard_options(self) -> tuple[tuple[int, int] | None, str | None]:
        """--genai-shard I/N and the group it belongs to (--genai-group, else from GitHub Actions' run id)."""
        from pytest_genai.shard.select import ShardError, check_group, default_group, parse_shard

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
        """--genai-shard I/N: the cases of other shards are deselected (the terminal counts them); other tests stay."""
        if self.shard is None:
            return
        from pytest_genai.shard.select import shard_of

        i, n = self.shard
        keep, drop = [], []
        for item in items:
            (drop if isinstance(item, CaseItem) and shard_of(item.case.id, n) != i else keep).append(item)
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
        from pytest_genai.config import ConfigError

        san = self.state.sanitizer
        try:
            self.state.pipeline
        except ConfigError as exc:
            message = san.text(str(exc))
        except Exception as exc:
            detail = san.exception(exc, 8)  # the reason goes on the first line too: the one CI's summary shows
            message = (f"{BUILD_FAILED} {self.state.config.pipeline.factory!r} failed: "
                       f"{headline(detail, type(exc).__name__)}\n{detail}")
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
        return bool(opt.collectonly or getattr(opt, "setuponly", False) or getattr(opt, "setupplan", False))

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        s = self.state
        prompt = f", prompt {s.prompt.ref} ({s.prompt.hash[:12]})" if s.prompt else ""
        lines = [
            f"genai: config {s.config.path.name} (config_hash {s.config.hash[:12]}), pipeline {s.config.pipeline.factory}{prompt}",
            f"genai: eval set {self.file_nodeid}: {len(s.eval_set)} cases (sha256 {s.eval_set.sha256[:12]}), seed {s.seed}",
        ]
        if self.workers:
            lines.append("genai: execution plan: pytest-xdist workers, each running its share one case at a time")
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
        """Fail fast on what can be checked before any case runs: the lock, the results folder, the store."""
        if is_worker(self.config):
            return
        from pytest_genai.tracking.envlock import EnvLockError

        cfg = self.state.config
        try:
            self.env, self.git = capture_env(cfg)
        except EnvLockError as exc:
            raise pytest.UsageError(f"{exc} (env.lock_file in {cfg.path.name})") from None
        if self._dry_run():
            return
        from pytest_genai.tracking.local import check_results_dir

        root = cfg.resolve_path("tracking.results_dir")
        assert root is not None
        problem = check_results_dir(root)
        if problem:
            raise pytest.UsageError(str(cfg.error("tracking.results_dir", f"cannot write run folders under {root}: {problem}")))
        self._check_markdown_path()
        if self.tracking_enabled:
            from pytest_genai.tracking.mlflow_store import check_store

            problem = check_store(self.tracking_uri)
            if problem:
                infra = self.state.sanitizer.secrets_only()
                where = infra.text(self.tracking_uri or "MLflow's default store")
                raise pytest.UsageError(
                    f"the MLflow tracking store {where} cannot be used: {infra.text(problem)}. Start it, fix "
                    "tracking.uri / --genai-tracking-uri, or set tracking.enabled: false (results are kept locally)")
        if self.state.prompt is not None and self.tracking_enabled:
            self._check_prompt_against_store()
        if self.register_wanted:
            self._check_registry()
        self._resolve_baseline()

    def _check_markdown_path(self) -> None:
        """--genai-markdown PATH must be writable before the first case runs, not found out after the last."""
        option = self.config.getoption("genai_markdown", None)
        if not option:
            return
        target = self.config.invocation_params.dir / option
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # the folders that do not exist yet are created at the end
        why = ("it is a folder" if target.is_dir() else f"{folder} is not a folder" if not folder.is_dir()
               else f"{folder} is not writable" if not os.access(folder, os.W_OK)
               else f"{target} is not writable" if target.exists() and not os.access(target, os.W_OK) else None)
        if why:
            raise pytest.UsageError(f"--genai-markdown {option}: cannot write {target}: {why}")

    def _baseline_ref(self) -> tuple[str | None, str]:
        """The baseline asked for and where it was asked (flag wins over the config key)."""
        flag = self.config.getoption("genai_baseline")
        if flag:
            return str(flag), "--genai-baseline"
        ref = self.state.config.get("compare.baseline")
        return (str(ref) if ref else None), "compare.baseline"

    @property
    def compare_options(self) -> Any:
        from pytest_genai.compare.measure import CompareOptions

        return CompareOptions.from_config(self.state.config, intersect=bool(self.config.getoption("genai_baseline_intersect")),
                                          require_baseline=bool(self.config.getoption("genai_require_baseline")))

    def _resolve_baseline(self) -> None:
        """Fetch the baseline now: a bad id, an unreachable store or another eval set stops the run before any
        case runs. A models:/ alias that does not exist yet is no baseline (its gates are skipped), not an error."""
        ref, where = self._baseline_ref()
        if ref is None:
            return
        from pytest_genai.compare.baseline import BaselineError, check_comparable, resolve_baseline

        cfg, infra = self.state.config, self.state.sanitizer.secrets_only()
        base_dir = self.config.invocation_params.dir if where == "--genai-baseline" else cfg.base_dir

        def refuse(why: str) -> pytest.UsageError:
            if where == "compare.baseline":
                return pytest.UsageError(infra.text(str(cfg.error("compare.baseline", f"{ref}: {why}"))))
            return pytest.UsageError(infra.text(f"{where} {ref}: {why}"))

        try:
            baseline = resolve_baseline(ref, self.tracking_uri, base_dir, results_dir=cfg.resolve_path("tracking.results_dir"),
                                        eval_set_hash=self.state.eval_set.sha256)
        except BaselineError as exc:
            raise refuse(str(exc)) from None
        if baseline.record is not None:
            why = check_comparable(baseline.record, self.state.eval_set.sha256, [c.id for c in self.state.eval_set.cases],
                                   intersect=self.compare_options.intersect)
            if why:
                raise refuse(why)
        self.baseline = baseline

    @property
    def register_wanted(self) -> bool:
        return bool(self.config.getoption("genai_register") or self.state.config.get("registry.register_on_pass"))

    def _check_registry(self) -> None:
        """Registering is asked for: everything it needs is checked now, not after every case ran. With
        --genai-register a missing need stops the session; registry.register_on_pass alone (the local loop, a dirty
        tree) only notes it and registers nothing."""
        from pytest_genai.release.preflight import check_can_register
        from pytest_genai.release.register import RegistryError, check_registry_store

        cfg = self.state.config
        if not cfg.get("registry.model_name"):
            raise pytest.UsageError(str(cfg.error("registry.model_name", "--genai-register (or registry.register_on_pass) "
                                                  "needs the registered model's name: set registry.model_name")))
        if not self.tracking_enabled:
            raise pytest.UsageError(str(cfg.error("tracking.enabled", "is false, but registering needs the eval run logged "
                                                  "to MLflow (a version points at its eval run)")))
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        try:
            check_registry_store(uri)
        except RegistryError as exc:
            raise pytest.UsageError(f"--genai-register: {exc}") from None
        infra = self.state.sanitizer.secrets_only()
        try:
            check_can_register(config=cfg, uri=uri, model_name=str(cfg.get("registry.model_name")), env=self.env,
                               git=self.git)
        except RegistryError as exc:
            if self.config.getoption("genai_register"):
                raise pytest.UsageError(infra.text(f"--genai-register: {exc}; no case was run")) from None
            self.register_blocked = infra.text(f"{exc} (checked at session start)")

    def _check_prompt_against_store(self) -> None:
        from pytest_genai.prompts import unbumped_edit_message
        from pytest_genai.tracking.mlflow_store import known_prompt_hashes

        prompt = self.state.prompt
        assert prompt is not None
        try:
            known = known_prompt_hashes(self.tracking_uri, self.experiment, prompt.id, prompt.version)
        except Exception as exc:  # an unreachable store must not stop local work; the log step reports it
            self.prompt_check_error = self.state.sanitizer.text(
                f"could not check prompt {prompt.ref} against the tracking store: {type(exc).__name__}: {exc}")
            return
        other = sorted(known - {prompt.hash})
        msg = unbumped_edit_message(prompt, other[0], f"the tracking store ({self.experiment})") if other else None
        if msg:
            raise pytest.UsageError(msg)

    @property
    def tracking_enabled(self) -> bool:
        return bool(self.state.config.get("tracking.enabled", True))

    @property
    def tracking_uri(self) -> str | None:
        from pytest_genai.tracking.mlflow_store import resolve_uri

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
            self.state.add_result(CaseResult.from_dict(data))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """On the xdist controller: the tags only a worker that built the pipeline knows."""
        self.state.worker_tags.update(getattr(node, "workeroutput", {}).get(WORKER_TAGS) or {})

    # -- session end: aggregate, write locally, log, gate -------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before MLflow's own plugin closes its session run: we nest under it
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.state.shutdown()
        if is_worker(self.config):
            if hasattr(self.config, "workeroutput"):
                self.config.workeroutput[WORKER_TAGS] = self.state.pipeline_tags()
            return
        if self.env is None or self._dry_run():
            return
        if not self.selected and not self.state.results:
            return  # no case was selected (or collection failed): there is no eval run to record
        if not self.state.results and exitstatus in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR,
                                                     pytest.ExitCode.INTERRUPTED):
            return  # the session stopped before any case ran (pipeline did not build, collection errors)
        unbuilt = [r.error for r in self.state.results.values() if (r.error or "").startswith(BUILD_FAILED)]
        if unbuilt and len(unbuilt) == len(self.state.results):  # xdist: as without it, no eval ran, none is recorded
            self.build_failure = unbuilt[0].splitlines()[0]  # type: ignore[union-attr]
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        from pytest_genai.runlog import Tracking, write_record
        from pytest_genai.tracking.local import new_run_dir, write_run_dir

        stopped = bool(session.shouldstop or session.shouldfail or exitstatus == pytest.ExitCode.INTERRUPTED)
        enforce = bool(self.config.getoption("genai_enforce_gates"))
        san = self.state.sanitizer
        tracking = Tracking(uri=san.secrets_only().text(self.tracking_uri), experiment=self.experiment)
        self.record = record = self.state.finish(self.env, self.git, enforce=enforce, selected=self.selected,
                                                 stopped_early=stopped, tracking=tracking, workers=self.workers,
                                                 baseline=self.baseline, compare=self.compare_options,
                                                 shard=self.shard_label, group=self.group)
        root = self.state.config.resolve_path("tracking.results_dir")
        assert root is not None
        try:
            self.run_dir = new_run_dir(root, self.state.config.hash)
            write_run_dir(self.run_dir, self.state, record, self.env)
            self._export_cassette()
        except Exception as exc:  # a full disk or a value JSON cannot hold: say so, never INTERNALERROR
            self.local_error = san.text(f"could not write local results under {root}: {type(exc).__name__}: {exc}")
        if self.tracking_enabled and self.local_error is None:
            try:
                assert self.run_dir is not None
                self.run_id = self._log_run_dir(self.run_dir)
            except Exception as exc:
                # about the store, not the eval's data: only secrets go (the server's own address stays readable)
                self.tracking_error = san.secrets_only().text(f"{type(exc).__name__}: {str(exc)[:500]}")
                try:
                    from pytest_genai.runlog import read_run

                    assert self.run_dir is not None
                    write_record(self.run_dir, read_run(self.run_dir, False).with_tracking(error=self.tracking_error))
                except Exception:
                    pass
        if self.run_dir is not None and self.local_error is None:
            from dataclasses import replace

            from pytest_genai.runlog import read_run

            # logging wrote where the run went into run.json; the results are the ones in memory
            self.record = record = replace(read_run(self.run_dir, with_results=False), results=record.results)
            try:
                self.config.hook.pytest_genai_run_finished(record=record, run_dir=self.run_dir)
            except Exception as exc:  # a user's hook: the run is recorded and logged already; say so, fail
                detail = san.exception(exc, 4)
                self.hook_error = f"a pytest_genai_run_finished hook raised {headline(detail, type(exc).__name__)}\n{detail}"
        if self.shard and self.run_id and self.tracking_error is None and self.config.getoption("genai_auto_merge"):
            self._merge_if_last()
        failed = ((record.gates_enforced and not record.gates_passed) or record.errors or self.tracking_error
                  or self.local_error or self.merge_failed or self.hook_error)
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self._write_markdown(session, record)

    def _log_run_dir(self, run_dir: Path) -> str:
        """In the warm tracking worker when there is one (MLflow already imported there), else in-process."""
        from pytest_genai.tracking.mlflow_store import log_run_dir
        from pytest_genai.tracking.warm import WorkerGone

        if self.warm is not None:
            try:
                return self.warm.log_run_dir(run_dir, self.tracking_uri, self.experiment)
            except WorkerGone:
                pass
        return log_run_dir(run_dir, self.tracking_uri, self.experiment)

    def _merge_if_last(self) -> None:
        """The last shard of a group to finish (all N shard runs logged, the parent not filled yet) merges the group
        into its parent run, as `pytest-genai merge ID` would, and reports the merged verdict: a failed gate of the
        whole eval fails this session. Two shards finishing at the same moment may both merge: the merged record is
        the same (a deterministic function of the shards), logged twice into the one parent."""
        from pytest_genai.report.terminal import Line
        from pytest_genai.shard.merge import MergeError, merge, ready_to_merge

        assert self.shard is not None and self.group is not None
        try:
            if not ready_to_merge(self.group, self.shard[1], self.tracking_uri, self.experiment):
                return
            merged, where = merge(self.group, self.state.config.path, self.tracking_uri, self.shard[1])
        except MergeError as exc:
            self.release_lines.append(Line(f"merge: group {self.group} not merged by this shard: {exc}", "yellow"))
            return
        except Exception as exc:  # the store, mid-merge: the shards are logged; `pytest-genai merge` can retry
            why = self.state.sanitizer.secrets_only().text(f"{type(exc).__name__}: {str(exc)[:300]}")
            self.release_lines.append(Line(f"merge: group {self.group} not merged by this shard: {why}; run "
                                           f"`pytest-genai merge {self.group}`", "yellow"))
            return
        verdict = "gates passed" if merged.passed else "GATES FAILED"
        self.merge_failed = not merged.passed
        self.release_lines.append(Line(
            f"merged: this was the last of the {self.shard[1]} shards of group {self.group}: parent run "
            f"{merged.tracking.run_id}, {len(merged.results)} cases, {verdict} (local results: {where})",
            "green" if merged.passed else "red-bold"))

    def _write_markdown(self, session: pytest.Session, record: Any) -> None:
        """The markdown summary (report.markdown) to --genai-markdown PATH and appended to $GITHUB_STEP_SUMMARY
        (GitHub's way: every step appends). Neither may cost the run its results: a step summary that cannot be
        written is one line; an explicit PATH that cannot be written fails the session, naming it."""
        option = self.config.getoption("genai_markdown", None)
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if not option and not step_summary:
            return
        from pytest_genai.report.markdown import github_report_hint, render_markdown
        from pytest_genai.report.terminal import Line

        san, here = self.state.sanitizer, self.config.invocation_params.dir
        run_dir = None
        if self.run_dir is not None and self.local_error is None:
            run_dir = str(self.run_dir.relative_to(here) if self.run_dir.is_relative_to(here) else self.run_dir)
        try:
            page = render_markdown(record, self.state.comparison, report_hint=github_report_hint(os.environ),
                                   run_dir=run_dir)
        except Exception as exc:  # a bug in the summary, never in the run
            reason = san.text(f"{type(exc).__name__}: {exc}") or ""
            page = f"## pytest-genai\n\nThe markdown summary could not be rendered ({reason}); run.json holds the run.\n"
            self.release_lines.append(Line(f"markdown summary: could not be rendered: {reason}", "yellow"))
        kept = f"; the run's results are in {run_dir}" if run_dir else ""
        if option:
            target = here / option
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(page, "utf-8")
            except OSError as exc:
                why = san.secrets_only().text(f"{type(exc).__name__}: {exc}")
                self.release_lines.append(Line(f"MARKDOWN SUMMARY FAILED: --genai-markdown {option}: cannot write {target}: "
                                               f"{why}{kept}. Give a path in a writable folder", "red-bold"))
                if session.exitstatus == pytest.ExitCode.OK:
                    session.exitstatus = pytest.ExitCode.TESTS_FAILED
            else:
                self.release_lines.append(Line(f"markdown summary: {option}"))
        if step_summary:
            try:
                with open(step_summary, "a", encoding="utf-8") as fh:
                    fh.write(page if fh.tell() == 0 else "\n" + page)
            except OSError as exc:
                why = san.secrets_only().text(f"{type(exc).__name__}: {exc}")
                self.release_lines.append(Line(f"step summary: could not append to $GITHUB_STEP_SUMMARY ({step_summary}): "
                                               f"{why}{kept}", "yellow"))

    @pytest.hookimpl(trylast=True, specname="pytest_sessionfinish")
    def pytest_sessionfinish_register(self, session: pytest.Session) -> None:  # the "pytest_" prefix: pytest reads it
        """After every other sessionfinish (this plugin's verdict and markdown, other plugins' own checks): a version
        comes only from a session whose exit status is final and 0, whatever failed it (a gate, an `expect` case, an
        ordinary test collected beside the cases). The terminal summary, which prints the outcome, runs after this."""
        if is_worker(self.config) or self.record is None or not self.register_wanted:
            return
        self._register(self.record, int(session.exitstatus))
        if self.release_error and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _register(self, record: Any, exitstatus: int) -> None:
        """A refusal is one line and leaves the verdict alone; a model that does not answer in a fresh process or a
        registration that breaks fails the session."""
        from pytest_genai.release.ops import who
        from pytest_genai.release.register import BundleCheckError, refusal, register_run
        from pytest_genai.report.terminal import Line

        cfg = self.state.config
        name, alias = str(cfg.get("registry.model_name")), str(cfg.get("registry.alias") or "staging")
        why = (self.register_blocked or refusal(record, require_clean_git=bool(cfg.get("registry.require_clean_git", True)))
               or (f"the session failed (exit {exitstatus})" if exitstatus != 0 else None))
        if why:
            self.release_lines.append(Line(f"registry: not registering {name}: {why}", "yellow"))
            return
        san = self.state.sanitizer
        try:
            reg = register_run(record=record, config=cfg, prompt=self.state.prompt, uri=self.tracking_uri,
                               model_name=name, alias=alias, sanitizer=san, by=who())
        except BundleCheckError as exc:
            self.release_error = str(exc)
            self.release_lines.append(Line(f"registry: not registering {name}: {exc}", "red-bold"))
            return
        except Exception as exc:
            self.release_error = san.secrets_only().text(f"{type(exc).__name__}: {str(exc)[:500]}")
            self.release_lines.append(Line(f"REGISTRATION FAILED: {self.release_error}", "red-bold"))
            return
        self.release_lines.append(Line(f"registered: {name} version {reg.version}, alias {alias} -> {reg.version} "
                                       f"(models:/{name}@{alias}, logged model {reg.model_id})", "green"))

    def _export_cassette(self) -> None:
        """After a record run (all workers done), the cache becomes a cassette in the repo and an artifact."""
        rt = self.state.runtime
        if rt.cache_mode != "record" or rt.cassette is None or rt.cache_path is None or not rt.cache_path.is_file():
            return
        import shutil

        from pytest_genai.llm.cache import export_cassette

        export_cassette(rt.cache_path, rt.cassette, keep=self._clean_entry)
        assert self.run_dir is not None
        shutil.copyfile(rt.cassette, self.run_dir / rt.cassette.name)

    def _clean_entry(self, entry: Any) -> bool:
        """With redaction on, a cassette carries no entry written raw (e.g. by a `safety.redact: false` run)."""
        san = self.state.sanitizer
        return san.obj(entry.request) == entry.request and san.text(entry.generation.text) == entry.generation.text

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.state.discard_replay_copy()
        if self.warm is not None:
            self.warm.close()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from pytest_genai.report.terminal import write_session_summary

        if self.env is not None and not self._dry_run():
            write_session_summary(terminalreporter, self)
