"""Helpers shared by the benchmarks: timing whole commands, reporting medians, and `record`, the one writer of
results.json (every entry carries the command that produced it, so every published number can be traced)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def time_command(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> float:
    """Wall seconds of `cmd`; an exit code not in `ok` raises (1: a run whose cases fail on purpose)."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def alternate(commands: dict[str, list[str]], cwd: Path, rounds: int, env: dict[str, str] | None = None,
              ok: tuple[int, ...] = (0,)) -> dict[str, list[float]]:
    """Run the variants interleaved, round after round, so machine noise hits them alike."""
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            times[name].append(time_command(cmd, cwd, env, ok))
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


# --- results.json: written only here, one entry per benchmark, each with the command that produced it ---------

RESULTS = Path(__file__).resolve().parent / "results.json"
SCHEMA_VERSION = 2
WRITTEN_BY = ("benchmarks/_util.py record(): do not edit by hand, re-run the command of an entry instead; "
              "render.py refuses an entry whose digest does not match its content")


def machine() -> str:

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def command_line() -> str:
    """The command that is running, as a user would type it from the repository root."""
    def rel(p: str) -> str:
        try:
            return str(Path(p).absolute().relative_to(REPO))
        except ValueError:
            return p

    return shlex.join([rel(sys.executable), rel(sys.argv[0]), *sys.argv[1:]])


def _git() -> dict[str, object]:
    def run(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def digest(entry: dict) -> str:
    """sha256 of the entry without its digest: a hand edit of any number makes it stale."""
    body = {k: v for k, v in entry.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _from_legacy(data: dict) -> dict:
    """The results.json of before provenance (one `make bench` dict): each section kept as it is, marked legacy."""
    when, mach = data.get("when"), data.get("machine")
    out = {}
    for name, results in data.items():
        if name in ("when", "machine"):
            continue
        entry = {"command": "make bench", "when": when, "machine": mach, "git_commit": None, "git_dirty": None,
                 "legacy": "from results.json before provenance was recorded; it may hold hand edits", "results": results}
        out[name] = {**entry, "digest": digest(entry)}
    return out


def load_results(path: Path = RESULTS) -> dict[str, dict]:
    """{benchmark name: entry}; entry = command, when, machine, git_commit, git_dirty, results, digest."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if "schema_version" not in data:
        return _from_legacy(data)
    if data["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {data['schema_version']}, expected {SCHEMA_VERSION}")
    return dict(data["benchmarks"])


def record(name: str, results: dict, *, command: str | None = None, path: Path = RESULTS) -> dict:
    """Write (replace) benchmark `name` in results.json with the command that produced it, when, on what machine and
    commit. The only writer of results.json: locked and renamed into place, so concurrent scripts do not lose entries."""
    entry = {"command": command or command_line(), "when": utc_now(), "machine": machine(), **_git(),
             "results": json.loads(json.dumps(results))}  # plain JSON now, so the digest is what a reader recomputes
    entry["digest"] = digest(entry)
    lock_path = Path(tempfile.gettempdir()) / f"bench-results-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = load_results(path)
        entries[name] = entry
        doc = {"schema_version": SCHEMA_VERSION, "written_by": WRITTEN_BY, "benchmarks": dict(sorted(entries.items()))}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    return entry


def example_env(uri: str) -> dict[str, str]:
    """What a subprocess running the bundled example needs: the store, offline weights, this venv's scripts."""
    bin_dir = str(Path(PY).parent)
    return {"MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
