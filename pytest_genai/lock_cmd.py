"""`pytest-genai lock [-o requirements.lock] [--force]`: write a lock of the current environment that the env drift
check (env.lock_file) reads back with zero drift here: one sorted `name==version` line per installed distribution,
`name @ URL` for a direct-URL, VCS or editable install (as pip freeze states them), after a header saying what wrote
it and when. pip, setuptools, wheel and pytest-genai itself are left out (the check never counts them as extra).
An existing file is kept unless --force (exit 1, saying whether it matches the installed packages)."""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_genai import __version__
from pytest_genai.tracking.envlock import NEVER_EXTRA, EnvLockError, compare_env, installed_details

PROJECT = "pytest-genai"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("lock", help="write a lock of the installed packages that the env drift check "
                                           "(env.lock_file) reads")
    p.add_argument("-o", "--output", type=Path, default=Path("requirements.lock"), metavar="PATH",
                   help="where to write it (default requirements.lock)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    return p


def lock_text(name: str = "requirements.lock", now: datetime | None = None) -> tuple[str, int]:
    """The lock of this environment (to be saved as `name`) and its number of pins. A distribution installed from
    a local folder (the project itself, `pip install -e .`) is named in a comment, not pinned: its path is this
    machine's, and the drift check never counts it as unlocked."""
    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    details = {n: inst for n, inst in installed_details().items() if n not in NEVER_EXTRA and n != PROJECT}
    pins = sorted((n, inst.requirement()) for n, inst in details.items() if not inst.local_folder)
    local = sorted(inst.name for inst in details.values() if inst.local_folder)
    header = (f"# Written by `pytest-genai lock` (pytest-genai {__version__}) on {when}\n"
              f"# from the packages installed for Python {platform.python_version()} ({sys.platform}, "
              f"{platform.machine() or 'unknown machine'}); pip, setuptools, wheel and pytest-genai are left out.\n"
              + (f"# Installed from a local folder, not pinned (the project's own code): {', '.join(local)}\n"
                 if local else "")
              + f"# Install with: pip install -r {name}   Regenerate with: pytest-genai lock --force\n")
    return header + "".join(f"{line}\n" for _, line in pins), len(pins)


def _state(path: Path) -> str:
    """What an existing file is, compared with the installed packages."""
    try:
        report = compare_env(path)
    except EnvLockError as exc:
        return f"it does not read as a lock ({exc.reason})"
    if report.drift == 0:
        return "it matches the installed packages"
    return f"it differs from the installed packages in {report.drift} distribution(s)"


def run(args: argparse.Namespace) -> int:
    path: Path = args.output
    if path.exists() and not args.force:
        state = _state(path) if path.is_file() else "it is not a file"
        print(f"pytest-genai lock: {path} exists and is kept: {state} (--force overwrites it)", file=sys.stderr)
        return 1
    text, count = lock_text(path.name)
    path.write_text(text, "utf-8")
    print(f"{path}: {count} pins of the installed packages (pip, setuptools, wheel and {PROJECT} left out)")
    return 0
