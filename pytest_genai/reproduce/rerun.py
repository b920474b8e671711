"""The re-run itself: pytest in a fresh process on the laid-out project, tracking off, then its run folder read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_genai.reproduce.source import ReproduceError
from pytest_genai.reproduce.workdir import Layout
from pytest_genai.runlog import RUN_FILE, RunLogError, RunRecord, read_run
from pytest_genai.sanitize import Sanitizer

TAIL = 25  # lines of the re-run's output shown when it wrote no run folder


@dataclass(frozen=True)
class Rerun:
    record: RunRecord
    folder: Path  # the re-run's run folder
    seconds: float
    exit_code: int
    output: str


def command(layout: Layout) -> list[str]:
    return [sys.executable, "-m", "pytest", "--genai-config", str(layout.config_path), *layout.pytest_args,
            "-p", "no:cacheprovider", "-q", str(layout.eval_set)]


def rerun(layout: Layout) -> Rerun:
    """A new process, as the eval ran: the same plugin code path, seeds per case, the pipeline built once."""
    started = time.perf_counter()
    proc = subprocess.run(command(layout), cwd=layout.workdir, env={**os.environ, **layout.env}, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    output = proc.stdout + ("\n" + proc.stderr if proc.stderr.strip() else "")
    done = sorted(d for d in layout.results_dir.iterdir() if (d / RUN_FILE).is_file()) if layout.results_dir.is_dir() else []
    if not done:
        tail = "\n".join(output.rstrip().splitlines()[-TAIL:])

        san = Sanitizer.from_config(layout.config)
        hint = ("\n  the run's code (its pipeline module, conftest.py) is taken from --project DIR (default: the current "
                "folder): run reproduce from the project's folder or pass --project") if (
            "ModuleNotFoundError" in output or "No module named" in output) else ""
        raise ReproduceError(f"the re-run wrote no run folder (pytest exit code {proc.returncode}); its output ends:\n"
                             + "\n".join("    " + ln for ln in (san.text(tail) or "").splitlines()) + hint)
    try:
        record = read_run(done[-1], with_results=True)
    except RunLogError as exc:
        raise ReproduceError(f"the re-run's run folder cannot be read: {exc}") from None
    return Rerun(record, done[-1], seconds, proc.returncode, output)
