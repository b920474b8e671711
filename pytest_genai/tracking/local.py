"""The local run folder: the run record and every artifact on disk before any network call.
Every file passes the session's one sanitizer."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import yaml

from pytest_genai.runlog import RunRecord, write_run

COMPARISON_FILE = "comparison.json"  # the full comparison with the baseline (per-case changes, statistics)


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
    (run_dir / "config.resolved.yaml").write_text(
        f"# resolved from {cfg.path.name}; config_hash {cfg.hash}; secrets shown as their ${{ENV}} reference\n"
        + yaml.safe_dump(san.obj(json.loads(json.dumps(cfg.public))), sort_keys=False), "utf-8")
    if session.prompt is not None:
        (run_dir / "prompt").mkdir()
        (run_dir / "prompt" / session.prompt.path.name).write_text(san.text(session.prompt.path.read_text("utf-8")) or "", "utf-8")


def write_run_dir(run_dir: Path, session: Any, record: RunRecord, env: Any) -> None:
    """Artifacts as plain files: config, prompt, renders, eval-set snapshot, env, index manifest, the HTML report;
    then the record (run.json last: a folder with it is complete)."""
    san = session.sanitizer
    write_config_and_prompt(run_dir, session)
    (run_dir / "eval_set").mkdir()
    (run_dir / "eval_set" / session.eval_set.path.name).write_bytes(_snapshot(session.eval_set.raw, san))
    with (run_dir / "renders.jsonl").open("w", encoding="utf-8") as fh:
        for r in record.results:
            fh.write(json.dumps({"id": r.id, "prompt": r.prompt}, ensure_ascii=False) + "\n")
    fingerprint = record.provenance.index_fingerprint
    if fingerprint:
        from pytest_genai.rag.index import index_dir

        manifest = index_dir(fingerprint) / "manifest.json"
        if manifest.is_file():
            (run_dir / "index").mkdir()
            data = san.obj(json.loads(manifest.read_text("utf-8")))
            (run_dir / "index" / "manifest.json").write_text(json.dumps(data, indent=2, ensure_ascii=False), "utf-8")
    (run_dir / "env").mkdir()
    (run_dir / "env" / "installed.txt").write_text(san.text(env.installed_text()) or "", "utf-8")
    if env.lock_path is not None:
        (run_dir / "env" / env.lock_path.name).write_text(san.text(env.lock_path.read_text("utf-8")) or "", "utf-8")
    (run_dir / "env" / "drift.json").write_text(json.dumps(san.obj({
        "drift": env.drift, "mismatched": env.mismatched, "missing": env.missing, "extra": env.extra}), indent=2), "utf-8")
    (run_dir / "gates.json").write_text(dumps({
        "passed": record.gates_passed, "enforced": record.gates_enforced, "status": record.status,
        "gates": [g.to_dict() for g in record.gates]}, indent=2), "utf-8")
    comparison = getattr(session, "comparison", None)
    if comparison is not None:  # sanitized by the session, like everything persisted
        (run_dir / COMPARISON_FILE).write_text(dumps(san.obj(comparison), indent=2) + "\n", "utf-8")
    write_report(run_dir, record, comparison, san)
    write_run(run_dir, record)


def write_report(run_dir: Path, record: RunRecord, comparison: Any = None, san: Any = None) -> None:
    """report.html from the record (already sanitized) and every regressed case of comparison.json. A report that
    cannot be rendered must not cost the run its local results or its MLflow run: the page then says why."""
    from pytest_genai.report.html import REPORT_FILE, render_html, regressed_from_comparison

    try:
        page = render_html(record, regressed_from_comparison(comparison))
    except Exception as exc:  # a bug in the report, never in the run
        import html

        reason = f"{type(exc).__name__}: {exc}"
        reason = (san.text(reason) if san is not None else reason) or ""
        page = (f"<!DOCTYPE html><meta charset=\"utf-8\"><title>pytest-genai report</title>"
                f"<p>The HTML report could not be rendered: {html.escape(reason)}. run.json and results.jsonl hold "
                "the run.</p>")
    (run_dir / REPORT_FILE).write_text(page, "utf-8")


def _snapshot(raw: bytes, san: Any) -> bytes:
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
