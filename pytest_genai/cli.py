"""The `pytest-genai` command: validate a config, lock prompts, upload a run folder kept locally."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-genai", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validate a config and the files it names (no model is loaded)")
    v.add_argument("config")
    lp = sub.add_parser("lock-prompts", help="record id@version -> hash of the config's prompt in the prompt lock")
    lp.add_argument("config")
    lp.add_argument("--force", action="store_true", help="overwrite a locked id@version whose hash differs")
    up = sub.add_parser("upload", help="log a local run folder to MLflow (after a tracking outage)")
    up.add_argument("run_dir")
    up.add_argument("--tracking-uri", default=None)
    up.add_argument("--experiment", default=None)
    args = parser.parse_args(argv)
    from pytest_genai.config import ConfigError
    from pytest_genai.prompts import PromptError
    from pytest_genai.session import SessionSetupError

    try:
        return {"validate": _validate, "lock-prompts": _lock_prompts, "upload": _upload}[args.command](args)
    except (ConfigError, PromptError, SessionSetupError, OSError) as exc:
        print(f"pytest-genai {args.command}: {exc}", file=sys.stderr)
        return 2


def _session(config_path: str):  # type: ignore[no-untyped-def]
    from pytest_genai.config import load_config
    from pytest_genai.session import EvalSession

    return EvalSession.from_config(load_config(config_path))


def _validate(args: argparse.Namespace) -> int:
    s = _session(args.config)
    print(f"ok: {args.config}: config_hash {s.config.hash}; {len(s.eval_set)} cases (sha256 {s.eval_set.sha256});"
          + (f" prompt {s.prompt.ref} ({s.prompt.hash})" if s.prompt else ""))
    return 0


def _lock_prompts(args: argparse.Namespace) -> int:
    from pytest_genai.config import load_config
    from pytest_genai.prompts import load_prompt, read_lock, unbumped_edit_message, write_lock

    cfg = load_config(args.config)
    if cfg.get("prompt") is None:
        print("the config has no prompt section", file=sys.stderr)
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
    from pytest_genai.tracking.local import read_summary
    from pytest_genai.tracking.mlflow_store import log_run_dir

    run_dir = Path(args.run_dir)
    if not (run_dir / "summary.json").is_file():
        print(f"pytest-genai upload: {run_dir} is not a pytest-genai run folder (no summary.json)", file=sys.stderr)
        return 2
    summary = read_summary(run_dir)
    if summary.get("mlflow_run_id"):
        print(f"{run_dir} was already logged as run {summary['mlflow_run_id']}", file=sys.stderr)
        return 1
    run_id = log_run_dir(run_dir, args.tracking_uri, args.experiment or summary.get("experiment") or "pytest-genai")
    print(f"logged {run_dir} as MLflow run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
