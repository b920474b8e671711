"""The `pytest-genai` command: start a project (init, install-models, lock); validate a config, lock prompts, show a
stored run, upload a run folder kept locally; list, promote and roll back registered models; list runs by a saved
view; reproduce a logged run."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from pytest_genai import __version__, lock_cmd, models_cmd, publish, runs_cmd, scaffold
from pytest_genai.config import ConfigError, load_config
from pytest_genai.harvest import cli as harvest_cli
from pytest_genai.llm.tokens import check_tokenizer
from pytest_genai.monitor import cli as monitor_cli
from pytest_genai.prompts import PromptError, load_prompt, read_lock, unbumped_edit_message, write_lock
from pytest_genai.registries import load_conftest
from pytest_genai.release.bundle import BundleError
from pytest_genai.release.ops import list_versions, promote, rollback
from pytest_genai.release.register import RegistryError
from pytest_genai.report import cli as report_cli
from pytest_genai.report.terminal import summary_lines, tracking_lines, verdict_lines
from pytest_genai.reproduce import cli as reproduce_cli
from pytest_genai.runlog import INTERRUPTED, RUNNING, RunLogError, read_run
from pytest_genai.sanitize import Sanitizer
from pytest_genai.session import EvalSession, SessionSetupError
from pytest_genai.shard import merge as merge_cmd
from pytest_genai.threads import CallTimeout, call_with_timeout
from pytest_genai.tracking.mlflow_client import bounded, command_tracking_uri, quiet
from pytest_genai.tracking.runref import resolve


def build_parser() -> argparse.ArgumentParser:
    """The whole `pytest-genai` command line (scripts/gen_docs.py walks it for docs/reference/cli.md)."""
    parser = argparse.ArgumentParser(prog="pytest-genai", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pytest-genai {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    scaffold.add_parser(sub)
    models_cmd.add_parser(sub)
    v = sub.add_parser("validate", help="validate a config and the files it names (no model is loaded)")
    v.add_argument("config")
    lp = sub.add_parser("lock-prompts", help="record id@version -> hash of the config's prompt in the prompt lock")
    lp.add_argument("config")
    lp.add_argument("--force", action="store_true", help="overwrite a locked id@version whose hash differs")
    up = sub.add_parser("upload", help="log a local run folder to MLflow (after a tracking outage)")
    up.add_argument("run_dir")
    up.add_argument("--tracking-uri", default=None, help="default: the URI the run was meant for (recorded in run.json)")
    up.add_argument("--experiment", default=None)
    sh = sub.add_parser("show", help="print a run's summary table: a run folder or an MLflow run id")
    sh.add_argument("run", metavar="RUN_DIR_OR_MLFLOW_RUN_ID")
    sh.add_argument("--tracking-uri", default=None, help="for an MLflow run id (default: tracking.uri of ./genai.yaml, "
                                                          "then MLFLOW_TRACKING_URI)")
    tracking_help = "MLflow tracking URI (default: MLFLOW_TRACKING_URI, then MLflow's default sqlite:///mlflow.db)"
    mo = sub.add_parser("models", help="a registered model's versions: aliases, gate verdicts, headline metrics, git commit")
    mo.add_argument("name")
    mo.add_argument("--tracking-uri", default=None, help=tracking_help)
    pr = sub.add_parser("promote", help="move alias --to to the version behind alias --from, if its eval passes the "
                                        "config's gates now")
    pr.add_argument("name")
    pr.add_argument("--from", dest="source", required=True, metavar="ALIAS")
    pr.add_argument("--to", dest="target", required=True, metavar="ALIAS")
    pr.add_argument("--config", default="genai.yaml", help="the config whose gates and eval set are in force (default genai.yaml)")
    pr.add_argument("--reeval", action="store_true", help="also load the registered model and check it reproduces the "
                                                          "logged answers case by case")
    pr.add_argument("--reason", default="", help="why (recorded in the alias history)")
    pr.add_argument("--new-alias", action="store_true", help="allow --to to name an alias the model has never had "
                                                             "(without it, such an alias is refused as a likely typo)")
    pr.add_argument("--tracking-uri", default=None, help=tracking_help)
    rb = sub.add_parser("rollback", help="point an alias back at the version it pointed to before")
    rb.add_argument("name")
    rb.add_argument("--alias", default="production")
    rb.add_argument("--reason", default="", help="why (recorded in the alias history)")
    rb.add_argument("--tracking-uri", default=None, help=tracking_help)

    monitor_cli.add_parser(sub)
    harvest_cli.add_parser(sub)
    report_cli.add_parser(sub)
    reproduce_cli.add_parser(sub)
    merge_cmd.add_parser(sub)
    runs_cmd.add_parser(sub)
    lock_cmd.add_parser(sub)
    return parser


# Commands that only talk to the tracking store: the whole command has TIMEOUT_ENV seconds (default 20), each
# request REQUEST_TIMEOUT_S and no retries, so an unreachable server is one line in seconds, not minutes of retries.
BOUNDED = frozenset({"models", "promote", "rollback", "show", "runs"})
TIMEOUT_ENV = "PYTEST_GENAI_TRACKING_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 5


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    commands = {"validate": _validate, "lock-prompts": _lock_prompts, "upload": _upload, "show": _show,
                "models": _models, "promote": _promote, "rollback": _rollback, "monitor": monitor_cli.run, "harvest": harvest_cli.run,
                "report": report_cli.run, "merge": merge_cmd.run, "runs": runs_cmd.run,
                "reproduce": reproduce_cli.run, "init": scaffold.run, "install-models": models_cmd.run, "lock": lock_cmd.run}
    try:
        if args.command in BOUNDED and not getattr(args, "reeval", False):
            return _bounded(commands[args.command], args)
        return commands[args.command](args)
    except BrokenPipeError:  # `pytest-genai show RUN | head`
        sys.stderr.close()
        return 0
    except (ConfigError, PromptError, SessionSetupError, RunLogError, RegistryError, BundleError, OSError) as exc:
        print(f"pytest-genai {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ != "MlflowException":  # the store refused something: one line, not a traceback
            raise
        print(f"pytest-genai {args.command}: {store_problem(exc, getattr(args, 'tracking_uri', None))}", file=sys.stderr)
        return 2


UNREACHABLE = {"Connection refused": "connection refused", "Read timed out": f"no answer within {REQUEST_TIMEOUT_S} s",
               "Name or service not known": "unknown host", "Failed to establish a new connection": "cannot connect",
               "timed out": f"no answer within {REQUEST_TIMEOUT_S} s"}


def store_problem(exc: BaseException, flag: str | None) -> str:
    """One line: a store that cannot be reached says so and names it; one that answered with a refusal says that."""
    text = str(exc)
    for marker, why in UNREACHABLE.items():
        if marker in text:
            uri = command_tracking_uri(flag) or "MLflow's default store"
            return f"cannot reach the tracking store {Sanitizer(False, None, ()).text(uri)}: {why}"
    return f"the MLflow store refused: {text.splitlines()[0] if text else exc!r}"




def _bounded(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        total = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        print(f"pytest-genai {args.command}: {TIMEOUT_ENV}={raw!r} is not a number of seconds", file=sys.stderr)
        return 2
    with bounded(0, max(1, min(REQUEST_TIMEOUT_S, int(total)))):
        try:
            return call_with_timeout(command, total, args, name=f"genai-{args.command}")
        except CallTimeout:
            uri = command_tracking_uri(getattr(args, "tracking_uri", None)) or "MLflow's default store"
            shown = Sanitizer(False, None, ()).text(uri)
            print(f"pytest-genai {args.command}: no answer from the tracking store {shown} within {total:g} s "
                  f"(is the server up? {TIMEOUT_ENV} sets the limit)", file=sys.stderr)
            return 2


def _session(config_path: str):  # type: ignore[no-untyped-def]
    try:
        folder = Path(config_path).resolve().parent
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError on 3.11): load_config says so, naming the file
        folder = Path(os.path.abspath(config_path)).parent
    load_conftest(folder)
    return EvalSession.from_config(load_config(config_path))


def _validate(args: argparse.Namespace) -> int:
    s = _session(args.config)
    check_tokenizer(s.config)  # what the dry run and budget: count with
    print(f"ok: {args.config}: config_hash {s.config.hash}; {len(s.eval_set)} cases (sha256 {s.eval_set.sha256});"
          + (f" prompt {s.prompt.ref} ({s.prompt.hash})" if s.prompt else ""))
    return 0


def _lock_prompts(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if cfg.get("prompt") is None:
        print(f"pytest-genai lock-prompts: {args.config} has no prompt section (prompt.id, prompt.version): there is "
              "no prompt to lock", file=sys.stderr)
        return 2
    prompt = load_prompt(cfg.resolve_path("prompt.dir"), cfg.get("prompt.id"), cfg.get("prompt.version"))  # type: ignore[arg-type]
    lock_path = cfg.resolve_path("prompt.lock_file")
    assert lock_path is not None
    known = read_lock(lock_path).get(prompt.ref)
    msg = unbumped_edit_message(prompt, known, f"the prompt lock {lock_path.name}") if known else None
    if msg and not args.force:
        print(f"pytest-genai lock-prompts: refusing to re-lock: {msg} (--force overwrites)", file=sys.stderr)
        return 1
    write_lock(lock_path, [prompt])
    print(f"{lock_path}: {prompt.ref} = {prompt.hash}")
    return 0


def _upload(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    record = read_run(run_dir, with_results=False)
    if record.tracking.run_id:
        print(f"{run_dir} was already logged as run {record.tracking.run_id}", file=sys.stderr)
        return 1
    if record.schema_version < 2:
        print(f"pytest-genai upload: {run_dir} was written by pytest-genai 0.1 (summary.json); re-run the eval to log it",
              file=sys.stderr)
        return 2
    if record.status in (RUNNING, INTERRUPTED) and "cases_evaluated" not in record.metrics:
        why = "is still running" if record.status == RUNNING else "was left by a session that died before its record"
        print(f"pytest-genai upload: {run_dir} {why}: it has no metrics to log; finish it with `pytest --genai-config "
              f"CONFIG --genai-resume {run_dir.name}` (which logs it)", file=sys.stderr)
        return 2
    uri = args.tracking_uri or record.tracking.uri
    if uri and "***" in uri:
        print("pytest-genai upload: the recorded tracking URI had credentials (masked); pass --tracking-uri", file=sys.stderr)
        return 2
    run_id = publish.log_run(run_dir, uri, args.experiment or record.tracking.experiment or "pytest-genai")
    print(f"logged {run_dir} as MLflow run {run_id} (tracking uri {uri or 'MLflow default'})")
    return 0


def _show(args: argparse.Namespace) -> int:
    """The same table as the end of a session, from a run folder or from an MLflow run's artifacts."""
    # the table is the record's, not recomputed: no results needed
    found = resolve(args.run, uri=command_tracking_uri(args.tracking_uri), with_results=False)
    if found.folder is not None and found.record.status in (RUNNING, INTERRUPTED) and "cases_evaluated" not in found.record.metrics:
        found = resolve(args.run, uri=command_tracking_uri(args.tracking_uri), with_results=True)  # what is on disk
    record, where = found.record, found.where
    p = record.provenance
    print(f"run {where}: status {record.status}, {p.pipeline}, config_hash {p.config_hash[:12]}, "
          f"eval set {p.eval_set_hash[:12]}, git {p.git_commit[:12]}")
    for line in summary_lines(record) + tracking_lines(record, where) + verdict_lines(record):
        print(line.text)
    return 0 if record.passed else 1


def _models(args: argparse.Namespace) -> int:
    with quiet():
        lines = list_versions(args.tracking_uri, args.name)
    print("\n".join(lines))
    return 0


def _promote(args: argparse.Namespace) -> int:
    with quiet():
        version = promote(args.tracking_uri, args.name, args.source, args.target, Path(args.config), reeval=args.reeval,
                          reason=args.reason, new_alias=args.new_alias)
    print(f"promoted: {args.name}@{args.target} -> version {version} (the version behind @{args.source})")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    with quiet():
        left, back = rollback(args.tracking_uri, args.name, args.alias, reason=args.reason)
    print(f"rolled back: {args.name}@{args.alias} -> version {back} (was {left})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
