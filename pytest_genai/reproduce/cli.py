"""`pytest-genai reproduce RUN`: re-run a logged eval (a run folder or an MLflow run id) from its artifacts in a
temporary folder and diff it with the run, case by case and aggregate by aggregate.

Exit 0: every compared per-case field and aggregate is identical; 1: something differs (the differing cases and
aggregates are printed); 2: the run cannot be reproduced as asked (unknown run id, missing artifacts, a config
that does not load here, a re-run that wrote no results), or `--strict` and the environment or the git commit
differs from the run's."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from pytest_genai.reproduce.checks import check_env, check_git
from pytest_genai.reproduce.diff import (
    case_lines,
    diff_runs,
    index_changes,
    metric_lines,
    not_compared_note,
    provenance_changes,
    short,
)
from pytest_genai.reproduce.rerun import rerun
from pytest_genai.reproduce.source import CONFIG_FILE, ReproduceError, is_run_folder_ref, open_run
from pytest_genai.reproduce.workdir import lay_out
from pytest_genai.run_folder import index_manifest
from pytest_genai.tracking.mlflow_client import config_tracking_uri

TOP = 20  # differing cases shown


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("reproduce", help="re-run a logged eval (run folder or MLflow run id) from its artifacts "
                                                "and diff it with the run case by case; exit 0 only when identical")
    p.add_argument("run", metavar="RUN_DIR_OR_MLFLOW_RUN_ID")
    p.add_argument("--project", default=".", metavar="DIR",
                   help="the folder the run's config was in: its corpus, conftest.py and pipeline module are used, and "
                        "its git HEAD is compared with the run's commit (default: the current folder)")
    p.add_argument("--tracking-uri", default=None,
                   help="for an MLflow run id (default: MLFLOW_TRACKING_URI, then tracking.uri of the project's "
                        "genai.yaml, then MLflow's default)")
    p.add_argument("--strict", action="store_true",
                   help="refuse (exit 2) before re-running when the installed packages differ from the run's lock or "
                        "its installed packages, or the project's git HEAD is not the run's clean commit")
    p.add_argument("--prompt-from", choices=("run", "project"), default="run",
                   help="run (default): the prompt file the run logged; project: the project's prompt file as it is "
                        "now (what today's prompt changes)")
    p.add_argument("--cassette", default=None, metavar="FILE",
                   help="replay the answers from this cassette (default: the one the run recorded, if any)")
    p.add_argument("--live", action="store_true", help="call the model even when the run recorded a cassette")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder of the re-run (printed) to look into")
    return p


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    try:
        return reproduce(args.run, project=Path(args.project), uri=args.tracking_uri, strict=args.strict,
                         prompt_from=args.prompt_from, cassette=Path(args.cassette) if args.cassette else None,
                         live=args.live, keep=args.keep, echo=echo)
    except (ReproduceError, OSError) as exc:
        print(f"pytest-genai reproduce: {exc}", file=sys.stderr)
        return 2


def _results_dir(source: Any) -> str | None:
    import yaml

    try:
        data = yaml.safe_load((source.folder / CONFIG_FILE).read_text("utf-8")) or {}
        return (data.get("tracking") or {}).get("results_dir")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def _manifest(folder: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(index_manifest(folder).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def reproduce(ref: str, *, project: Path, uri: str | None = None, strict: bool = False, prompt_from: str = "run",
              cassette: Path | None = None, live: bool = False, keep: bool = False,
              echo: Callable[[str], None] = print) -> int:
    """The command (see the module doc); returns its exit code, raises ReproduceError for exit 2."""
    if not project.is_dir():
        raise ReproduceError(f"--project {project}: no such folder")
    if cassette is not None and not cassette.is_file():
        raise ReproduceError(f"--cassette {cassette}: no such file")
    if cassette is not None and live:
        raise ReproduceError("--cassette and --live contradict each other: replay from a cassette, or call the model")
    if uri is None and not os.environ.get("MLFLOW_TRACKING_URI") and not is_run_folder_ref(ref) and not Path(ref).is_dir():
        uri = config_tracking_uri(project / "genai.yaml")
    root = Path(tempfile.mkdtemp(prefix="genai-reproduce-"))
    try:
        source = open_run(ref, uri, root / "run")
        r, p = source.record, source.record.provenance
        prompt = f", prompt {p.prompt_id}@{p.prompt_version} ({short(p.prompt_hash)})" if p.prompt_id else ""
        echo(f"reproduce {source.where}: {len(r.results)} cases ({r.status}), pipeline {p.pipeline}, seed {p.seed}, "
             f"config_hash {short(p.config_hash)}{prompt}, eval set {short(p.eval_set_hash)}")
        env_check, git_check = check_env(source), check_git(source, project.resolve(), _results_dir(source))
        for line in env_check.lines + git_check.lines:
            echo(line)
        if strict and (env_check.differs or git_check.differs):
            what = [w for w, d in (("the environment", env_check.differs), ("the code (git)", git_check.differs)) if d]
            raise ReproduceError(f"--strict: not re-running: {' and '.join(what)} {'are' if len(what) > 1 else 'is'} "
                                 "not the run's (see above)")
        layout = lay_out(source, project, root, prompt_from=prompt_from, cassette=cassette, live=live)
        echo("re-run inputs:")
        for line in layout.inputs:
            echo(f"  {line}")
        for line in layout.warnings:
            echo(f"  warning: {line}")
        again = rerun(layout)
        new = again.record
        why = {0: "", 1: ": failed cases or gates, as the run's own verdict may be"}.get(again.exit_code, "")
        echo(f"re-ran {len(new.results)} cases in {again.seconds:.1f} s (pytest exit code {again.exit_code}{why}; "
             "tracking off: no MLflow run)")
        changes = provenance_changes(r, new)
        if changes:
            echo("provenance differs: " + "; ".join(f"{c.name} {short(c.old)} → {short(c.new)}" for c in changes))
            for line in index_changes(_manifest(source.folder), _manifest(again.folder)):
                echo(f"  index: {line}")
        else:
            echo("provenance: the re-run's config_hash, prompt.hash, eval_set.hash, index.fingerprint and model "
                 "hashes are the run's")
        diff = diff_runs(r, new)
        note = not_compared_note(diff)
        if diff.identical:
            echo(f"identical: {diff.cases_compared} cases, {len(diff.metrics_compared)} metrics ({note})")
            return 0
        echo(f"DIFFERENT: {len(diff.cases)} of {len(r.results)} case(s) and {len(diff.metrics)} of "
             f"{len(diff.metrics_compared)} metric(s) differ, run → re-run ({note})")
        if diff.cases:
            echo("differing cases:")
            for line in case_lines(diff, TOP):
                echo(line)
        if diff.metrics:
            echo("differing metrics:")
            for line in metric_lines(diff):
                echo(line)
        return 1
    finally:
        if keep:
            echo(f"kept the re-run's folder: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m pytest_genai.reproduce RUN ...` (the same as `pytest-genai reproduce RUN ...`)."""
    parser = argparse.ArgumentParser(prog="pytest-genai")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["reproduce", *(sys.argv[1:] if argv is None else argv)]))
