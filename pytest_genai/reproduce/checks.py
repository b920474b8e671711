"""What the re-run's surroundings are against the run's: the installed packages against the run's lock and its
installed.txt, the Python version, and the project's git HEAD against the run's commit. Reported always;
`--strict` refuses to re-run when any of them differs (or cannot be told)."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from pytest_genai.reproduce.source import RunSource
from pytest_genai.run_folder import ENV_DIR, INSTALLED_FILE
from pytest_genai.tracking.envlock import EnvLockError, compare_env, installed_distributions, normalize
from pytest_genai.tracking.gitinfo import git_info

SHOWN = 5  # differing packages named per line
# What pytest-genai itself writes into a project (as session._dirty): not a change of the code under test.
OUR_PATHS = (".pytest-genai", "mlruns", "mlartifacts", "mlflow.db", "mlflow.db-journal")


@dataclass(frozen=True)
class Check:
    lines: tuple[str, ...]
    differs: bool  # a difference, or something that could not be verified


def _shown(items: list[str]) -> str:
    return "; ".join(items[:SHOWN]) + (f"; … ({len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def read_installed(path: Path) -> dict[str, str]:
    """env/installed.txt: `name==version` a line, names normalised as by envlock."""
    out: dict[str, str] = {}
    for line in path.read_text("utf-8").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            out[normalize(name)] = version
    return out


def installed_differences(then: dict[str, str], now: dict[str, str]) -> list[str]:
    out = [f"{n}: the run had {v}, installed {now[n]}" for n, v in sorted(then.items()) if n in now and now[n] != v]
    out += [f"{n}: the run had {v}, not installed" for n, v in sorted(then.items()) if n not in now]
    out += [f"{n}=={v}: installed, the run did not have it" for n, v in sorted(now.items()) if n not in then]
    return out


def check_env(source: RunSource) -> Check:
    p = source.record.provenance
    lines: list[str] = []
    differs = False
    if p.env_lock_hash is None:
        lines.append(f"env: the run had no lock file ({p.env_lock_file or 'env.lock_file'} not found): not compared "
                     "with a lock")
    else:
        copy = source.artifact("env", p.env_lock_file or "")
        if copy is None:
            differs = True
            lines.append(f"env: the run's lock {p.env_lock_file} is not among its artifacts (env/): cannot compare")
        else:
            try:
                report = compare_env(copy)
            except EnvLockError as exc:
                differs = True
                lines.append(f"env: the run's copy of its lock does not read as one: {exc}")
            else:
                drift = report.lines()
                differs = differs or bool(drift)
                then = f" (the run had {p.env_drift})" if p.env_drift else ""
                lines.append(f"env: installed vs the run's lock {p.env_lock_file}: "
                             + (f"{len(drift)} difference(s){then}: {_shown(drift)}" if drift else "identical"))
    installed = source.artifact(ENV_DIR, INSTALLED_FILE)
    if installed is None:
        differs = True
        lines.append("env: the run's env/installed.txt is not among its artifacts: installed packages not compared")
    else:
        then = read_installed(installed)
        diff = installed_differences(then, installed_distributions())
        differs = differs or bool(diff)
        lines.append("env: installed vs the run's installed packages (env/installed.txt): "
                     + (f"{len(diff)} difference(s): {_shown(diff)}" if diff else f"identical ({len(then)} distributions)"))
    now = platform.python_version()
    if p.python and p.python != now:
        differs = True
        lines.append(f"env: Python {now}, the run's was {p.python}")
    return Check(tuple(lines), differs)


def _own(path_entry: str, results_dir: str | None) -> bool:
    path = path_entry.split(": ", 1)[-1].strip("/")
    top = path.split("/")[0]
    ours = set(OUR_PATHS) | ({str(results_dir).strip("./").split("/")[0]} if results_dir else set())
    return top in ours


def check_git(source: RunSource, project: Path, results_dir: str | None = None) -> Check:
    """The run's commit against HEAD of the project's work tree (uncommitted changes count: HEAD is not what runs)."""
    p = source.record.provenance
    info = git_info(project)
    dirty = tuple(e for e in info.dirty_paths if not _own(e, results_dir))
    dirty_more = info.dirty_count > len(info.dirty_paths)
    run_state = {True: "uncommitted changes", False: "clean", None: "dirty state unknown"}[p.git_dirty]
    theirs = "the run recorded no git commit" if p.git_commit == "unknown" else f"the run's commit {p.git_commit[:12]} ({run_state})"
    if info.commit == "unknown":
        return Check((f"git: {theirs}; {project} is not in a git work tree with a commit: the code cannot be compared",),
                     True)
    now_state = "clean" if not dirty and not dirty_more and info.dirty is not None else (
        "dirty state unknown" if info.dirty is None else
        f"uncommitted changes: {_shown(list(dirty))}" + (" …" if dirty_more else ""))
    same = p.git_commit == info.commit
    verdict = ("the run's commit is unknown: the code cannot be compared" if p.git_commit == "unknown"
               else "same commit" if same else "ANOTHER commit")
    line = f"git: {theirs}; HEAD of {project}: {info.commit[:12]} ({now_state}): {verdict}"
    lines = [line]
    if p.git_dirty and p.git_dirty_paths:
        lines.append(f"git: the run had uncommitted changes, so its commit does not pin its code: {_shown(list(p.git_dirty_paths))}")
    return Check(tuple(lines), not same or p.git_commit == "unknown" or now_state != "clean" or bool(p.git_dirty))
