"""`pytest-genai report RUN --out FILE`: the static HTML report of a stored run (a run folder or an MLflow run id),
the same page a session writes as report.html. Exit 0: written; 2: the run could not be read or the file written."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

COMPARISON_FILE = "comparison.json"  # pytest_genai.tracking.local.COMPARISON_FILE (not imported: parser set-up stays light)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="write a run's self-contained HTML report: a run folder or an MLflow run id")
    p.add_argument("run", metavar="RUN_DIR_OR_MLFLOW_RUN_ID")
    p.add_argument("--out", default="report.html", metavar="FILE", help="where to write it (default ./report.html)")
    p.add_argument("--tracking-uri", default=None, help="for an MLflow run id (default: tracking.uri of ./genai.yaml, "
                                                         "then MLFLOW_TRACKING_URI)")
    return p


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    from pytest_genai.report.html import regressed_from_comparison, render_html
    from pytest_genai.runlog import RunLogError

    from pytest_genai.tracking.mlflow_store import command_tracking_uri

    try:
        record, comparison, where = load(args.run, command_tracking_uri(args.tracking_uri))
        page = render_html(record, regressed_from_comparison(comparison))
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(page, "utf-8")
        except OSError as exc:
            raise OSError(f"--out {out}: cannot write it: {exc}") from None
    except (RunLogError, OSError, ValueError) as exc:
        print(f"pytest-genai report: {exc}", file=sys.stderr)
        return 2
    echo(f"wrote {out} ({len(record.results)} cases, {out.stat().st_size / 1e3:.0f} kB) from {where}")
    return 0


def load(ref: str, uri: str | None) -> tuple[Any, Mapping[str, Any] | None, str]:
    """(record with its results, comparison.json or None, where it came from)."""
    from pytest_genai.runlog import read_run

    path = Path(ref)
    if path.is_dir():
        return read_run(path, with_results=True), _read_json(path / COMPARISON_FILE), str(path)
    from pytest_genai.compare.baseline import record_from_mlflow

    record, where = record_from_mlflow(ref, uri, with_results=True)
    return record, _mlflow_comparison(ref, uri), where


def _read_json(path: Path) -> Mapping[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None  # no comparison (or an unreadable one): the record's own regressed list is used
    return data if isinstance(data, dict) else None


def _mlflow_comparison(run_id: str, uri: str | None) -> Mapping[str, Any] | None:
    """comparison.json of an MLflow run, when it was compared with a baseline (every regressed case)."""
    from pytest_genai.tracking.mlflow_store import _bounded, _client, _quiet

    with _quiet(), _bounded(0, 30), tempfile.TemporaryDirectory(prefix="genai-report-") as tmp:
        try:
            local = _client(uri).download_artifacts(run_id, COMPARISON_FILE, tmp)
        except Exception:
            return None  # not compared: nothing to download
        return _read_json(Path(local))
