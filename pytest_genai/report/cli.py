"""`pytest-genai report RUN --out FILE`: the static HTML report of a stored run (a run folder or an MLflow run id;
any reference of tracking.runref), the same page a session writes as report.html. Exit 0: written; 2: the run
could not be read or the file written."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from pytest_genai.report.html import regressed_from_comparison, render_html
from pytest_genai.run_folder import COMPARISON_FILE  # a foundation module: parser set-up stays light
from pytest_genai.runlog import RunLogError
from pytest_genai.tracking.mlflow_client import command_tracking_uri
from pytest_genai.tracking.runref import opened


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="write a run's self-contained HTML report: a run folder or an MLflow run id")
    p.add_argument("run", metavar="RUN_DIR_OR_MLFLOW_RUN_ID")
    p.add_argument("--out", default="report.html", metavar="FILE", help="where to write it (default ./report.html)")
    p.add_argument("--tracking-uri", default=None, help="for an MLflow run id (default: tracking.uri of ./genai.yaml, "
                                                         "then MLFLOW_TRACKING_URI)")
    return p


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
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
    """(record with its results, comparison.json or None, where it came from): any run reference
    (tracking.runref), an MLflow run's comparison.json downloaded with its record when it has one."""
    with opened(ref, uri=uri, with_results=True, artifacts=(COMPARISON_FILE,)) as found:
        assert found.folder is not None
        return found.record, _read_json(found.folder / COMPARISON_FILE), found.where


def _read_json(path: Path) -> Mapping[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None  # no comparison (or an unreadable one): the record's own regressed list is used
    return data if isinstance(data, dict) else None
