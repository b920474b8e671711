"""Target: logging a 10,000-case run to the PostgreSQL-backed, authenticated server under 5 s; 20 sessions
logging at once within 2x the time of one. Also measured: what the case traces cost through the server (MLflow's
public API: one start_trace request a case, the spans in batches).

Starts a real server with scripts/server.py (what `make server` runs: PostgreSQL, `mlflow server --app-name
basic-auth`, proxied artifacts) in a temporary folder, builds the same 10,000-case run folder as
bench_mlflow_logging.py and times `log_run_dir` (experiment lookup, run creation, batched params/metrics/tags,
artifact upload through the server). Then 20 processes, already started and imported, log a 20-case run each at
the same moment (a file barrier); the wall time from release to the last FINISHED run is compared with one
process doing the same alone."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_genai.environ import overridden
from _util import PY, REPO, record

N = 10_000
ROUNDS = 3
TRACED = 500  # cases of the run whose traces are timed through the server
SESSIONS = 20
SMALL = 20

# One child: import everything, wait for the barrier, log its own copy of the run folder, print the seconds.
CHILD = r"""
import json, os, shutil, sys, time
from pathlib import Path
from pytest_genai.runlog import Tracking, read_run, write_record
from pytest_genai.tracking.mlflow_store import log_run_dir
import mlflow.tracking  # imported before the clock starts, as in a session that checked the store at start
src, dest, barrier, exp = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
shutil.copytree(src, dest)
write_record(dest, read_run(dest, with_results=False).with_tracking(**vars(Tracking())))
(barrier / f"ready-{os.getpid()}").touch()
while not (barrier / "go").exists():
    time.sleep(0.01)
started, cpu = time.perf_counter(), time.process_time()
log_run_dir(dest, os.environ["MLFLOW_TRACKING_URI"], exp)
print(json.dumps({"log_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, "done_at": time.time()}),
      flush=True)
while not (barrier / "end").exists():  # exit after the parent has read the machine's CPU: exits are not logging
    time.sleep(0.01)
"""


def start_server(folder: Path) -> dict[str, str]:
    env = {**os.environ, "GENAI_SERVER_DIR": str(folder)}
    proc = subprocess.run([PY, str(REPO / "scripts" / "server.py"), "start"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/server.py start failed:\n{proc.stderr[-3000:]}")
    return dict(line.removeprefix("export ").split("=", 1) for line in proc.stdout.splitlines())


def stop_server(folder: Path) -> None:
    subprocess.run([PY, str(REPO / "scripts" / "server.py"), "destroy"], env={**os.environ, "GENAI_SERVER_DIR": str(folder)},
                   capture_output=True, text=True)


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process: clients, server, PostgreSQL)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def concurrent_logging(run_dir: Path, root: Path, sessions: int, tag: str) -> dict[str, float]:
    """`sessions` processes log at the same moment; seconds from the release to the last one done, and the CPU the
    machine spent meanwhile (what bounds the ratio: N sessions need N times one session's CPU)."""
    barrier = root / f"barrier-{tag}"
    barrier.mkdir()
    exp = f"bench-concurrent-{tag}"
    from mlflow.tracking import MlflowClient

    MlflowClient().create_experiment(exp)  # created once: the sessions measure logging, not the get-or-create race
    procs = [subprocess.Popen([PY, "-c", CHILD, str(run_dir), str(root / f"{tag}-{i}"), str(barrier), exp],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(sessions)]
    while len(list(barrier.glob("ready-*"))) < sessions:
        if any(p.poll() not in (None, 0) for p in procs):
            raise RuntimeError(next(p.stderr.read() for p in procs if p.poll() not in (None, 0)))  # type: ignore[union-attr]
        time.sleep(0.05)
    released, busy = time.time(), busy_cpu_s()
    (barrier / "go").touch()
    lines = [p.stdout.readline() for p in procs]  # type: ignore[union-attr]
    busy = busy_cpu_s() - busy
    (barrier / "end").touch()
    outs = [(line + out, err) for line, (out, err) in zip(lines, (p.communicate() for p in procs))]
    bad = [err[-2000:] for p, (_, err) in zip(procs, outs) if p.returncode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} of {sessions} logging processes failed:\n{bad[0]}")
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    return {"wall_s": max(r["done_at"] for r in results) - released, "machine_cpu_s": busy,
            "log_median_s": statistics.median(r["log_s"] for r in results),
            "client_cpu_median_s": statistics.median(r["cpu_s"] for r in results)}


def main() -> dict[str, float]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_mlflow_logging import build_run_dir, set_traces

    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        root = Path(tmp)
        folder = root / "server"
        started = time.perf_counter()
        creds = start_server(folder)
        start_s = time.perf_counter() - started
        env = overridden(dict(creds))  # the server's credentials for this process, put back at the end
        env.__enter__()
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            from pytest_genai.runlog import Tracking, read_run, write_record
            from pytest_genai.tracking.mlflow_store import log_run_dir

            big = root / "big"
            big.mkdir()
            run_dir = build_run_dir(big)
            size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
            set_traces(run_dir, False)  # the 5 s target is the run; the traces are timed below
            times = []
            for i in range(ROUNDS):
                write_record(run_dir, read_run(run_dir, with_results=False).with_tracking(**vars(Tracking())))
                t0 = time.perf_counter()
                log_run_dir(run_dir, creds["MLFLOW_TRACKING_URI"], f"bench-{i}")
                times.append(time.perf_counter() - t0)

            import bench_mlflow_logging

            bench_mlflow_logging.N = TRACED
            traced_root = root / "traced"
            traced_root.mkdir()
            traced_dir = build_run_dir(traced_root)
            timed: dict[bool, float] = {}
            for on in (False, True):
                set_traces(traced_dir, on)
                write_record(traced_dir, read_run(traced_dir, with_results=False).with_tracking(**vars(Tracking())))
                t0 = time.perf_counter()
                log_run_dir(traced_dir, creds["MLFLOW_TRACKING_URI"], f"bench-traced-{on}")
                timed[on] = time.perf_counter() - t0
            assert read_run(traced_dir, with_results=False).tracking.traces == TRACED, "the traces were not logged"

            bench_mlflow_logging.N = SMALL  # the concurrent sessions log with traces, as a session does by default
            small_root = root / "small"
            small_root.mkdir()
            small = build_run_dir(small_root)
            one = concurrent_logging(small, root, 1, "one")
            many = concurrent_logging(small, root, SESSIONS, "many")
        finally:
            env.__exit__(None, None, None)
            stop_server(folder)
    return {"cases": N, "run_dir_mb": size / 1e6, "server_start_s": start_s, "log_median_s": statistics.median(times),
            "log_min_s": min(times), "log_max_s": max(times), "rounds": ROUNDS,
            "concurrent_sessions": SESSIONS, "concurrent_cases_each": SMALL, "one_session_log_s": one["wall_s"],
            "concurrent_wall_s": many["wall_s"], "concurrent_log_median_s": many["log_median_s"],
            "concurrent_vs_one": many["wall_s"] / one["wall_s"], "traced_cases": TRACED,
            # the CPU the machine spent on one session (client + server + PostgreSQL), and the lowest ratio that CPU
            # allows on this machine's cores: N sessions' CPU spread over every core, against one session's wall
            "one_session_machine_cpu_s": one["machine_cpu_s"], "one_session_client_cpu_s": one["client_cpu_median_s"],
            "concurrent_machine_cpu_s": many["machine_cpu_s"], "cores": os.cpu_count() or 1,
            "cpu_floor_vs_one": SESSIONS * one["machine_cpu_s"] / (os.cpu_count() or 1) / one["wall_s"],
            "server_traces_ms_per_case": (timed[True] - timed[False]) / TRACED * 1000}


if __name__ == "__main__":
    json.dump(record("server_logging", main()), sys.stdout, indent=2)
    print()
