"""`--genai-dry-run` and `budget:` in a pytest session (the estimate itself: dryrun.py).

Dry run: the selected cases (-k, shards and all) are estimated and then deselected, so no case runs and no model
is called; the figures are printed at the end and the session exits 0 (1 when the low estimate is over a budget
limit). Nothing is recorded: no run folder, no MLflow run.

Budget (a real run with `budget:`): the same estimate, made after collection and before the pipeline is built: a
low estimate over a limit stops the session with the figures (a usage error, exit 4) before any call; a high one
over it is a warning. The run's record keeps the estimate, and its errors against the actual figures are metrics."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_genai import dryrun, startup
from pytest_genai.compare.baseline import previous_run
from pytest_genai.items import CaseItem


class DryRunPlugin:
    def __init__(self, config: pytest.Config, session: Any, *, dry: bool) -> None:
        self.config = config
        self.state = session
        self.dry = dry
        self.lines: list[str] = []
        self.over_budget: str | None = None
        self.warnings: list[str] = []

    @property
    def _eval(self) -> Any:
        return self.config.pluginmanager.get_plugin("genai-eval")

    def _baseline(self) -> tuple[Any, str | None]:
        """(baseline record, its name): the one the session resolved, else --genai-baseline / compare.baseline,
        else the newest complete run of this eval set in tracking.results_dir."""
        ev, cfg = self._eval, self.state.config
        resolved = getattr(ev, "baseline", None)
        if resolved is None:
            flag = self.config.getoption("genai_baseline")
            ref, where = (str(flag), "--genai-baseline") if flag else (cfg.get("compare.baseline"), "compare.baseline")
            if ref:
                base_dir = self.config.invocation_params.dir if where == "--genai-baseline" else cfg.base_dir
                try:
                    resolved = startup.fetch_baseline(str(ref), where, config=cfg, uri=ev.tracking_uri, base_dir=base_dir,
                                                      eval_set=self.state.eval_set, intersect=True,
                                                      sanitizer=self.state.sanitizer)
                except startup.StartError as exc:
                    raise pytest.UsageError(str(exc)) from None
            else:
                root = cfg.resolve_path("tracking.results_dir")
                resolved = previous_run(root, self.state.eval_set.sha256) if root is not None else None
        if resolved is None or resolved.record is None:
            return None, None
        return resolved.record, f"{resolved.source} ({resolved.ref})"

    @pytest.hookimpl(trylast=True)  # after the eval plugin's own selection (shards, resume)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
        if hasattr(config, "workerinput"):
            return  # the controller estimates (xdist workers each collect every case)
        cases = [i for i in items if isinstance(i, CaseItem)]
        if not cases:
            self.lines = ["dry run: no case selected (-k, -m, --genai-shard): nothing would be called"] if self.dry else []
            return
        record, name = self._baseline()
        try:
            est = dryrun.estimate(self.state, [i.case for i in cases], baseline=record, baseline_name=name,
                                  concurrency=self.state.runtime.concurrency)
        except Exception as exc:  # a config problem (llm.tokenizer), a pipeline that does not build: one clear error
            raise pytest.UsageError(f"genai: the cost estimate failed: {self.state.sanitizer.text(str(exc))}") from None
        budget = self.state.config.get("budget") or {}
        try:
            self.warnings = dryrun.check_budget(est, budget, pricing=self.state.pricing,
                                                cache_mode=self.state.runtime.cache_mode)
        except dryrun.BudgetExceeded as exc:
            self.over_budget = str(exc)  # a real run stops in pytest_collection_finish, before the pipeline is built
        self.lines = dryrun.lines(est, eval_set=self.state.eval_set.path.name, label="dry run" if self.dry else "estimate")
        if self.dry:
            config.hook.pytest_deselected(items=cases)
            items[:] = [i for i in items if not isinstance(i, CaseItem)]
            return
        self._eval.estimate = est
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            for line in self.lines[:1] + [f"budget: {w}" for w in self.warnings]:
                tr.write_line(f"genai: {line}", yellow=line.startswith("budget"))

    @pytest.hookimpl(tryfirst=True)  # before the eval plugin builds (and warms up) the pipeline
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """pytest calls this even when modifyitems raised: the refusal is raised here, so nothing is built."""
        if self.over_budget and not self.dry:
            raise pytest.UsageError(f"genai: BUDGET EXCEEDED, the run does not start: {self.over_budget}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.dry and not hasattr(self.config, "workerinput"):
            if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
                session.exitstatus = pytest.ExitCode.TESTS_FAILED if self.over_budget else pytest.ExitCode.OK

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.dry or not self.lines:
            return
        terminalreporter.section("pytest-genai dry run (no model called, nothing recorded)")
        for line in self.lines:
            terminalreporter.write_line(line)
        for w in self.warnings:
            terminalreporter.write_line(f"budget: {w}", yellow=True)
        if self.over_budget:
            terminalreporter.write_line(f"BUDGET EXCEEDED: {self.over_budget}", red=True, bold=True)
        elif self.state.config.get("budget"):
            terminalreporter.write_line("budget: the low estimate is within every limit", green=True)
