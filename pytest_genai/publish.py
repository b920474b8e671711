"""Publish a finished run record: the local run folder first (and the cassette of a record run), then the MLflow
run (in the warm tracking worker when there is one), the markdown summary (--genai-markdown, GitHub's step summary)
and the registration of a run that passed. The one place that turns a
record into files, runs and versions: a session, `pytest-genai upload` and `pytest-genai merge` call it alike.

Each step reports what went wrong as a sanitized line (report.terminal.Line) and never costs the run its results.
The registry's modules are imported when a record is registered: a plain session does not load them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from pytest_genai.llm.cache import export_cassette
from pytest_genai.report.html import regressed_from_comparison, render_html
from pytest_genai.report.markdown import github_report_hint, render_gate_summary, render_markdown
from pytest_genai.report.terminal import Line
from pytest_genai.runlog import RunRecord, read_run, write_record
from pytest_genai.sanitize import headline
from pytest_genai.tracking.local import new_run_dir, write_run_dir
from pytest_genai.tracking.mlflow_store import log_run_dir
from pytest_genai.tracking.warm import WorkerGone


@dataclass
class Published:
    """Where the run went and what failed on the way (the terminal summary's input, with the record)."""

    record: RunRecord
    run_dir: Path | None = None
    run_id: str | None = None
    local_error: str | None = None
    tracking_error: str | None = None
    hook_error: str | None = None
    merge_failed: bool = False
    interrupted: bool = False  # Ctrl-C while logging: the session exits as interrupted
    lines: list[Line] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """What fails the session besides the record's own verdict: a store, a disk, a user's hook, the merge."""
        return bool(self.tracking_error or self.local_error or self.merge_failed or self.hook_error)


def html_report(record: RunRecord, comparison: Any) -> str:
    return render_html(record, regressed_from_comparison(comparison))


def log_run(run_dir: Path, uri: str | None, experiment: str, warm: Any = None, *, into_run_id: str | None = None) -> str:
    """The run folder into one MLflow run (its description: the gate table): in the warm tracking worker when there
    is one (MLflow already imported there), else in-process; `into_run_id`: into that run (a sharded eval's parent)."""
    if warm is not None and into_run_id is None:
        try:
            return warm.log_run_dir(run_dir, uri, experiment, describe=render_gate_summary)
        except WorkerGone:
            pass
    return log_run_dir(run_dir, uri, experiment, into_run_id=into_run_id, describe=render_gate_summary)


def publish(session: Any, record: RunRecord, env: Any, *, tracking: bool, uri: str | None, experiment: str,
            warm: Any = None, hook: Any = None, journal: Any = None,
            after_local: Callable[[], bool] | None = None) -> Published:
    """Write the run folder (the journal's, when the session kept one: the final record over its `running` one),
    log it, then hand the logged record to `pytest_genai_run_finished` (`hook`). `after_local()`, called once the
    folder is written, says whether to go on logging (False after a second Ctrl-C: `pytest-genai upload RUN` logs
    the folder later)."""
    san = session.sanitizer
    out = Published(record)
    root = session.config.resolve_path("tracking.results_dir")
    assert root is not None
    try:
        out.run_dir = journal.run_dir if journal is not None else new_run_dir(root, session.config.hash)
        write_run_dir(out.run_dir, session, record, env, render_report=html_report)
        write_cassette(session, out.run_dir)
    except Exception as exc:  # a full disk or a value JSON cannot hold: say so, never INTERNALERROR
        out.local_error = san.text(f"could not write local results under {root}: {type(exc).__name__}: {exc}")
        return out
    finally:
        if journal is not None:
            journal.close(final=out.local_error is None)
    if journal is not None and journal.errors:
        out.local_error = san.text("the journal could not keep every case as it finished: " + "; ".join(journal.errors[:3]))
    if after_local is not None and not after_local():
        tracking = False
    if tracking:
        try:
            out.run_id = log_run(out.run_dir, uri, experiment, warm)
        except (Exception, KeyboardInterrupt) as exc:
            # about the store, not the eval's data: only secrets go (the server's own address stays readable)
            out.tracking_error = san.secrets_only().text(f"{type(exc).__name__}: {str(exc)[:500]}")
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C while logging: the folder holds the run already
                out.interrupted = True
                out.tracking_error = f"interrupted while logging to MLflow ({exc}): the run folder holds the run"
            try:
                write_record(out.run_dir, read_run(out.run_dir, False).with_tracking(error=out.tracking_error))
            except Exception:
                pass
    # logging wrote where the run went into run.json; the results are the ones in memory
    out.record = replace(read_run(out.run_dir, with_results=False), results=record.results)
    if hook is not None:
        try:
            hook.pytest_genai_run_finished(record=out.record, run_dir=out.run_dir)
        except Exception as exc:  # a user's hook: the run is recorded and logged already; say so, fail
            detail = san.exception(exc, 4)
            out.hook_error = f"a pytest_genai_run_finished hook raised {headline(detail, type(exc).__name__)}\n{detail}"
    return out


def write_cassette(session: Any, run_dir: Path) -> None:
    """After a record run (all workers done), the cache becomes a cassette in the repo and an artifact. With
    redaction on, a cassette carries no entry written raw (e.g. by a `safety.redact: false` run)."""
    rt, san = session.runtime, session.sanitizer
    if rt.cache_mode != "record" or rt.cassette is None or rt.cache_path is None or not rt.cache_path.is_file():
        return

    def clean(entry: Any) -> bool:
        return san.obj(entry.request) == entry.request and san.text(entry.generation.text) == entry.generation.text

    export_cassette(rt.cache_path, rt.cassette, keep=clean)
    shutil.copyfile(rt.cassette, run_dir / rt.cassette.name)


def write_markdown(out: Published, comparison: Any, *, option: str | None, here: Path, sanitizer: Any,
                   environ: Mapping[str, str] = os.environ) -> bool:
    """The markdown summary (report.markdown) to --genai-markdown PATH and appended to $GITHUB_STEP_SUMMARY
    (GitHub's way: every step appends). Neither may cost the run its results: a step summary that cannot be
    written is one line; an explicit PATH that cannot be written fails the session (returns False), naming it."""
    step_summary = environ.get("GITHUB_STEP_SUMMARY")
    if not option and not step_summary:
        return True
    san, ok = sanitizer, True
    run_dir = None
    if out.run_dir is not None and out.local_error is None:
        run_dir = str(out.run_dir.relative_to(here) if out.run_dir.is_relative_to(here) else out.run_dir)
    try:
        page = render_markdown(out.record, comparison, report_hint=github_report_hint(environ), run_dir=run_dir)
    except Exception as exc:  # a bug in the summary, never in the run
        reason = san.text(f"{type(exc).__name__}: {exc}") or ""
        page = f"## pytest-genai\n\nThe markdown summary could not be rendered ({reason}); run.json holds the run.\n"
        out.lines.append(Line(f"markdown summary: could not be rendered: {reason}", "yellow"))
    kept = f"; the run's results are in {run_dir}" if run_dir else ""
    if option:
        target = here / option
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(page, "utf-8")
        except OSError as exc:
            why = san.secrets_only().text(f"{type(exc).__name__}: {exc}")
            out.lines.append(Line(f"MARKDOWN SUMMARY FAILED: --genai-markdown {option}: cannot write {target}: "
                                  f"{why}{kept}. Give a path in a writable folder", "red-bold"))
            ok = False
        else:
            out.lines.append(Line(f"markdown summary: {option}"))
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as fh:
                fh.write(page if fh.tell() == 0 else "\n" + page)
        except OSError as exc:
            why = san.secrets_only().text(f"{type(exc).__name__}: {exc}")
            out.lines.append(Line(f"step summary: could not append to $GITHUB_STEP_SUMMARY ({step_summary}): "
                                  f"{why}{kept}", "yellow"))
    return ok


def register_record(record: RunRecord, *, config: Any, prompt: Any, uri: str | None, sanitizer: Any,
                    blocked: str | None = None, exitstatus: int = 0) -> tuple[Line, str | None]:
    """What --genai-register does with a finished record (a session's, or `pytest-genai merge`'s parent run): one
    line, a refusal (a failed gate, a dirty tree, ...) or the version it became; and the error when registering
    broke (a model that does not answer in a fresh process, a store that refused), which fails the caller."""
    from pytest_genai.release.ops import who  # registering only: the release modules load here
    from pytest_genai.release.register import BundleCheckError, refusal, register_run

    name, alias = str(config.get("registry.model_name")), str(config.get("registry.alias") or "staging")
    why = (blocked or refusal(record, require_clean_git=bool(config.get("registry.require_clean_git", True)))
           or (f"the session failed (exit {exitstatus})" if exitstatus != 0 else None))
    if why:
        return Line(f"registry: not registering {name}: {why}", "yellow"), None
    try:
        reg = register_run(record=record, config=config, prompt=prompt, uri=uri, model_name=name, alias=alias,
                           sanitizer=sanitizer, by=who())
    except BundleCheckError as exc:
        return Line(f"registry: not registering {name}: {exc}", "red-bold"), str(exc)
    except Exception as exc:
        error = sanitizer.secrets_only().text(f"{type(exc).__name__}: {str(exc)[:500]}")
        return Line(f"REGISTRATION FAILED: {error}", "red-bold"), error
    return Line(f"registered: {name} version {reg.version}, alias {alias} -> {reg.version} (models:/{name}@{alias}, "
                f"logged model {reg.model_id}, eval run {record.tracking.run_id})", "green"), None


def register(out: Published, *, config: Any, prompt: Any, uri: str | None, sanitizer: Any, blocked: str | None,
             exitstatus: int) -> str | None:
    """A session's registration: its line joins the others; the error (if registering broke) is returned."""
    line, error = register_record(out.record, config=config, prompt=prompt, uri=uri, sanitizer=sanitizer,
                                  blocked=blocked, exitstatus=exitstatus)
    out.lines.append(line)
    return error
