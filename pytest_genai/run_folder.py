"""The run folder's layout: the name of every file and folder a session (or `pytest-genai merge`) writes in a run
folder, which is also the layout of the MLflow run's artifacts (the folder is logged as is). Everything that
writes or reads a run folder takes the names from here. A foundation module: it imports nothing of the package.

    run.json                 RUN_FILE          the run record without its results (written last: a folder with it
                                               is complete)
    results.jsonl            RESULTS_FILE      one case result a line
    config.resolved.yaml     CONFIG_FILE       the resolved config, secrets as their ${ENV} reference
    prompt/<file>            PROMPT_DIR        the prompt file as run
    eval_set/<file>          EVAL_SET_DIR      the eval set as run, sanitized
    renders.jsonl            RENDERS_FILE      the rendered prompt of each case
    index/manifest.json      INDEX_DIR, INDEX_MANIFEST   the RAG index's manifest
    env/installed.txt        ENV_DIR, INSTALLED_FILE     the installed distributions
    env/<lock file>          ENV_DIR           the env lock as it was
    env/drift.json           ENV_DIR, DRIFT_FILE         the lock vs the installed packages
    gates.json               GATES_FILE        the gate verdicts
    comparison.json          COMPARISON_FILE   the full comparison with the baseline (per-case changes, statistics)
    shards.json              SHARDS_FILE       a merged run: the shard runs it was made from
    report.html              REPORT_FILE       the static HTML report
    summary.json             LEGACY_SUMMARY    a 0.1 run folder's record (read only)
    .lock                    LOCK_FILE         locked while the session that writes the folder lives (the journal)
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a `running` record then reads as running
    fcntl = None  # type: ignore[assignment]

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
LEGACY_SUMMARY = "summary.json"  # release 0.1's record (with gates.json and results.jsonl)
CONFIG_FILE = "config.resolved.yaml"
RENDERS_FILE = "renders.jsonl"
GATES_FILE = "gates.json"
COMPARISON_FILE = "comparison.json"
SHARDS_FILE = "shards.json"
REPORT_FILE = "report.html"
PROMPT_DIR = "prompt"
EVAL_SET_DIR = "eval_set"
INDEX_DIR = "index"
INDEX_MANIFEST = "manifest.json"  # in INDEX_DIR
ENV_DIR = "env"
INSTALLED_FILE = "installed.txt"  # in ENV_DIR
DRIFT_FILE = "drift.json"  # in ENV_DIR
LOCK_FILE = ".lock"  # flock'd by the live session (tracking.journal); removed when its record is final
TMP_SUFFIX = ".tmp"  # a file being written (write_atomic): renamed when complete

# the files a session writes at the top of a run folder (anything else there is the user's: a cassette)
TOP_FILES = frozenset({RUN_FILE, RESULTS_FILE, CONFIG_FILE, RENDERS_FILE, GATES_FILE, COMPARISON_FILE, SHARDS_FILE,
                       REPORT_FILE, LOCK_FILE})
RECORD_FILES = (RUN_FILE, RESULTS_FILE)  # what a RunRecord is read from (runlog.read_run)
REPORT_FILES = frozenset({REPORT_FILE, COMPARISON_FILE})  # what a re-run or a merge does not need


def is_run_folder(path: Path) -> bool:
    """A complete run folder of this release (its run.json written)."""
    return (path / RUN_FILE).is_file()


def index_manifest(run_dir: Path) -> Path:
    return run_dir / INDEX_DIR / INDEX_MANIFEST


def installed_file(run_dir: Path) -> Path:
    return run_dir / ENV_DIR / INSTALLED_FILE


def drift_file(run_dir: Path) -> Path:
    return run_dir / ENV_DIR / DRIFT_FILE


def write_atomic(path: Path, text: str) -> None:
    """Written to a temporary file beside it and renamed: a reader never sees half a file."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_text(text, "utf-8")
    tmp.replace(path)


def lock_writer(path: Path) -> int | None:
    """Create and flock `path` for the life of this process (or until the returned descriptor is closed)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new folder, or one nobody writes any more
        except OSError:
            os.close(fd)
            raise
    return fd


def writer_alive(run_dir: Path) -> bool:
    """Is the session writing `run_dir` still alive? Its lock is held exactly as long as it lives (the OS drops
    it however the process ends: exit, signal, crash, OOM kill)."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
