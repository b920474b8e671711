"""Helpers shared by the benchmarks: timing whole commands and reporting medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def time_command(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def alternate(commands: dict[str, list[str]], cwd: Path, rounds: int, env: dict[str, str] | None = None) -> dict[str, list[float]]:
    """Run the variants interleaved, round after round, so machine noise hits them alike."""
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            times[name].append(time_command(cmd, cwd, env))
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)
