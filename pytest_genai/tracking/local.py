"""The local run folder: the run record and every artifact on disk before any network call.
Every file passes the session's one sanitizer. The names are run_folder's; the HTML report is rendered by the
caller's `render_report` (tracking renders no report)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from pytest_genai.rag.index import index_dir
from pytest_genai.run_folder import (
    COMPARISON_FILE,
    CONFIG_FILE,
    ENV_DIR,
    EVAL_SET_DIR,
    GATES_FILE,
    INDEX_DIR,
    INDEX_MANIFEST,
    PROMPT_DIR,
    RENDERS_FILE,
    REPORT_FILE,
    drift_file,
    index_manifest,
    installed_file,
)
from pytest_genai.runlog import RunRecord, write_run

ReportPage = Callable[[RunRecord, Any], str]  # (record, the comparison or None) -> the HTML report page


def new_run_dir(root: Path, config_hash: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    root.mkdir(parents=True, exist_ok=True)
    base = root / f"{stamp}-{config_hash[:8]}"
    path, n = base, 1
    while True:
        try:
            path.mkdir()  # atomic: two sessions started in the same second get two folders
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def check_results_dir(root: Path) -> str | None:
    """At session start: can a run folder be written under `root`? (None, or why not)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{time.time_ns()}"
        probe.write_text("ok", "utf-8")
        probe.unlink()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def write_config_and_prompt(run_dir: Path, session: Any) -> None:
    """The resolved config (secrets as their ${ENV} reference) and the prompt file, sanitized: every run folder's."""
    cfg, san = session.config, session.sanitizer
    (run_dir / CONFIG_FILE).write_text(
        f"# resolved from {cfg.path.name}; config_hash {cfg.hash}; secrets shown as their ${{ENV}} reference\n"
        + yaml.safe_dump(san.obj(json.loads(json.dumps(cfg.public))), sort_keys=False), "utf-8")
    if session.prompt is not None:
        (run_dir / PROMPT_DIR).mkdir()
        (run_dir / PROMPT_DIR / session.prompt.path.name).write_text(san.text(session.prompt.path.read_text("utf-8")) or "", "utf-8")


def write_run_dir(run_dir: Path, session: Any, record: RunRecord, env: Any, *, render_report: ReportPage) -> None:
    """Artifacts as plain files: config, prompt, renders, eval-set snapshot, env, index manifest, the HTML report
    (the page `render_report` makes); then the record (run.json last: a folder with it is complete)."""
    san = session.sanitizer
    if not (run_dir / CONFIG_FILE).is_file():  # a journal's folder has them from its first case on
        write_config_and_prompt(run_dir, session)
    (run_dir / EVAL_SET_DIR).mkdir(exist_ok=True)
    (run_dir / EVAL_SET_DIR / session.eval_set.path.name).write_bytes(eval_set_snapshot(session.eval_set.raw, san))
    write_renders(run_dir, record)
    fingerprint = record.provenance.index_fingerprint
    if fingerprint:
        manifest = index_dir(fingerprint) / INDEX_MANIFEST  # the index cache's manifest, copied under its name
        if manifest.is_file():
            (run_dir / INDEX_DIR).mkdir(exist_ok=True)
            data = san.obj(json.loads(manifest.read_text("utf-8")))
            index_manifest(run_dir).write_text(json.dumps(data, indent=2, ensure_ascii=False), "utf-8")
    (run_dir / ENV_DIR).mkdir(exist_ok=True)
    installed_file(run_dir).write_text(san.text(env.installed_text()) or "", "utf-8")
    if env.lock_path is not None:
        (run_dir / ENV_DIR / env.lock_path.name).write_text(san.text(env.lock_path.read_text("utf-8")) or "", "utf-8")
    drift_file(run_dir).write_text(json.dumps(san.obj({
        "drift": env.drift, "mismatched": env.mismatched, "missing": env.missing, "extra": env.extra}), indent=2), "utf-8")
    write_gates(run_dir, record)
    comparison = getattr(session, "comparison", None)
    if comparison is not None:  # sanitized by the session, like everything persisted
        (run_dir / COMPARISON_FILE).write_text(dumps(san.obj(comparison), indent=2) + "\n", "utf-8")
    write_report(run_dir, record, comparison, san, render=render_report)
    write_run(run_dir, record)


def write_renders(run_dir: Path, record: RunRecord) -> None:
    """renders.jsonl: the prompt each case was asked with."""
    with (run_dir / RENDERS_FILE).open("w", encoding="utf-8") as fh:
        for r in record.results:
            fh.write(json.dumps({"id": r.id, "prompt": r.prompt}, ensure_ascii=False) + "\n")


def write_gates(run_dir: Path, record: RunRecord) -> None:
    """gates.json: the verdict of every gate."""
    (run_dir / GATES_FILE).write_text(dumps({
        "passed": record.gates_passed, "enforced": record.gates_enforced, "status": record.status,
        "gates": [g.to_dict() for g in record.gates]}, indent=2), "utf-8")


def write_report(run_dir: Path, record: RunRecord, comparison: Any = None, san: Any = None, *,
                 render: ReportPage) -> None:
    """report.html: the page `render` makes of the record (already sanitized) and comparison.json (every regressed
    case). A report that cannot be rendered must not cost the run its local results or its MLflow run: the page
    then says why."""
    try:
        page = render(record, comparison)
    except Exception as exc:  # a bug in the report, never in the run
        import html

        reason = f"{type(exc).__name__}: {exc}"
        reason = (san.text(reason) if san is not None else reason) or ""
        page = (f"<!DOCTYPE html><meta charset=\"utf-8\"><title>pytest-genai report</title>"
                f"<p>The HTML report could not be rendered: {html.escape(reason)}. run.json and results.jsonl hold "
                "the run.</p>")
    (run_dir / REPORT_FILE).write_text(page, "utf-8")


def eval_set_snapshot(raw: bytes, san: Any) -> bytes:
    """The eval set as run, line for line, sanitized (its hash tag is of the raw file)."""
    lines = raw.decode("utf-8-sig").split("\n")
    out = []
    for line in lines:
        try:
            out.append(json.dumps(san.obj(json.loads(line)), ensure_ascii=False) if line.strip() else line)
        except ValueError:
            out.append(san.text(line) or "")
    return "\n".join(out).encode("utf-8")


def dumps(data: Any, **kwargs: Any) -> str:
    """Strict JSON: NaN ("no data") becomes null instead of the invalid bare NaN."""
    return json.dumps(_nan_to_none(data), allow_nan=False, ensure_ascii=False, **kwargs)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj
