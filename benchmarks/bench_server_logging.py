"""Targets (issue 24 item 10, re-specified for a 2-core machine): logging a 10,000-case run to the PostgreSQL-backed,
authenticated server under 5 s; 20 sessions logging to it at once with 0 lost or partial runs and client
CPU-seconds per session within 1.3x of a lone session's; case traces through the server <= 2 ms per case.

(The earlier "20 sessions within 2x the wall time of one" cannot hold on 2 cores: 20 sessions need 20 times one
session's CPU, client, server and PostgreSQL alike; that floor, from the CPU seconds the client, the server's
processes and PostgreSQL spend on a lone session, is recorded as cpu_floor_vs_one beside the wall times.)

Starts a real server with scripts/server.py (what `make server` runs: PostgreSQL, `mlflow server --app-name
genai-basic-auth`, proxied artifacts) in a temporary folder, builds the same 10,000-case run folder as
bench_mlflow_logging.py and times `log_run_dir` (experiment lookup, run creation, batched params/metrics/tags,
artifact upload through the server). Case traces: `log_run_dir` of a 500-case run folder with `tracking.traces`
true vs false, interleaved rounds, the difference of the medians (the traces go to the server's batch endpoint;
MLflow's per-trace calls, what a stock server gets, are timed once on the same traces beside it). Load: processes
already started and warmed up (`warm.warm_up`, what a session's tracking worker does while the cases run) log a
20-case run each (with its traces) at the same moment (a file barrier): 3 alone one after the other, then 20 at
once, twice; each reports the CPU seconds it spent in `log_run_dir` (all its threads); then every run is read back
from the server: FINISHED, every metric, every trace."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_genai.environ import overridden
from _util import PY, REPO, record

N = 10_000
ROUNDS = 3
TRACED = 500  # cases of the run whose traces are timed through the server
TRACE_ROUNDS = 3
SESSIONS = 20
LOAD_ROUNDS = 2  # each: LONE_ROUNDS lone sessions one after the other, then SESSIONS at once
LONE_ROUNDS = 3
SMALL = 20

# One child: import everything, wait for the barrier, log its own copy of the run folder, print the seconds.
CHILD = r"""
import json, os, shutil, sys, time
from pathlib import Path
from pytest_genai.runlog import Tracking, read_run, write_record
from pytest_genai.tracking.mlflow_store import log_run_dir
from pytest_genai.tracking.warm import warm_up
warm_up(os.environ["MLFLOW_TRACKING_URI"])  # before the clock, as a session's tracking worker does while cases run
src, dest, barrier, exp = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
shutil.copytree(src, dest)
write_record(dest, read_run(dest, with_results=False).with_tracking(**vars(Tracking())))
(barrier / f"ready-{os.getpid()}").touch()
while not (barrier / "go").exists():
    if not barrier.exists():  # the parent is gone (it failed): no orphan waits forever
        sys.exit(1)
    time.sleep(0.01)
started, cpu = time.perf_counter(), time.process_time()
log_run_dir(dest, os.environ["MLFLOW_TRACKING_URI"], exp)
done = {"log_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, "done_at": time.time()}
tracking = read_run(dest, with_results=False).tracking
print(json.dumps({**done, "run_id": tracking.run_id, "traces": tracking.traces, "warnings": list(tracking.warnings)}),
      flush=True)
while not (barrier / "end").exists() and barrier.exists():  # exit after the parent read the CPU: exits are not logging
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


def stack_cpu_s(folder: Path) -> float:
    """CPU seconds the server's processes have spent: the MLflow server and its workers (its process group) and
    PostgreSQL (the postmaster and its backends, exited ones included through the parent's children's time). Not
    the whole machine's: other work on a shared machine does not count."""
    state = json.loads((folder / "server.json").read_text())
    postmaster = int((Path(state["pgdata"]) / "data" / "postmaster.pid").read_text().split()[0])
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = int(stat.parent.name), stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        ppid, pgrp = int(rest[1]), int(rest[2])
        if pgrp == state["mlflow_pid"] or pid == postmaster or ppid == postmaster:
            total += sum(int(x) for x in rest[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def concurrent_logging(run_dir: Path, root: Path, sessions: int, tag: str, server: Path) -> dict[str, Any]:
    """`sessions` processes log at the same moment; seconds from the release to the last one done, the CPU the
    machine and the server's processes spent meanwhile, each process's own CPU in `log_run_dir`, and what the
    server holds afterwards."""
    barrier = root / f"barrier-{tag}"
    barrier.mkdir()
    exp = f"bench-concurrent-{tag}"
    from mlflow.tracking import MlflowClient

    exp_id = MlflowClient().create_experiment(exp)  # created once: the sessions measure logging, not get-or-create
    procs = [subprocess.Popen([PY, "-c", CHILD, str(run_dir), str(root / f"{tag}-{i}"), str(barrier), exp],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(sessions)]
    try:
        while len(list(barrier.glob("ready-*"))) < sessions:
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError(next(p.stderr.read() for p in procs if p.poll() not in (None, 0)))  # type: ignore[union-attr]
            time.sleep(0.05)
        released, busy, stack = time.time(), busy_cpu_s(), stack_cpu_s(server)
        (barrier / "go").touch()
        lines = [p.stdout.readline() for p in procs]  # type: ignore[union-attr]
        busy, stack = busy_cpu_s() - busy, stack_cpu_s(server) - stack
    except BaseException:
        for p in procs:  # exactly the processes started here
            p.kill()
        raise
    finally:
        (barrier / "end").touch()
    outs = [(line + out, err) for line, (out, err) in zip(lines, (p.communicate() for p in procs))]
    bad = [err[-2000:] for p, (_, err) in zip(procs, outs) if p.returncode != 0]
    results = [json.loads(out.strip().splitlines()[-1]) for (out, _), p in zip(outs, procs) if p.returncode == 0]
    return {"wall_s": max(r["done_at"] for r in results) - released if results else float("nan"),
            "machine_cpu_s": busy, "log_s": [r["log_s"] for r in results], "cpu_s": [r["cpu_s"] for r in results],
            "stack_cpu_s": stack + sum(r["cpu_s"] for r in results),  # the server's, PostgreSQL's and the clients'
            "failed_processes": len(bad), "first_failure": bad[0] if bad else None,
            **read_back(exp_id, results, sessions)}


def read_back(exp_id: str, results: list[dict[str, Any]], sessions: int) -> dict[str, Any]:
    """Every session's run as the server has it: lost (no run), partial (not FINISHED, a metric, a tag or a trace
    missing, or a tracking warning), complete."""
    from mlflow.tracking import MlflowClient

    from pytest_genai import names

    client = MlflowClient()
    runs = {r.info.run_id: r for r in client.search_runs([exp_id], max_results=1000)}
    expected_metrics = None
    partial = []
    for r in results:
        run = runs.get(r["run_id"])
        if run is None:
            continue
        traces = len(client.search_traces(locations=[exp_id], run_id=run.info.run_id, max_results=100))
        metrics = set(run.data.metrics)
        expected_metrics = expected_metrics or metrics
        missing = [what for what, ok in (
            (f"status {run.info.status}", run.info.status == "FINISHED"),
            (f"{len(metrics)} metrics", metrics == expected_metrics and len(metrics) > 0),
            (f"{r['traces']} traces logged, {traces} on the server", r["traces"] == SMALL and traces == SMALL),
            (f"tag {names.TAG_TRACES}={run.data.tags.get(names.TAG_TRACES)}", run.data.tags.get(names.TAG_TRACES) == str(SMALL)),
            (f"warnings {r['warnings']}", not r["warnings"])) if not ok]
        if missing:
            partial.append(f"{run.info.run_id}: {'; '.join(missing)}")
    found = sum(1 for r in results if r["run_id"] in runs)
    return {"runs_found": len(runs), "lost_runs": sessions - found, "partial_runs": len(partial), "partial": partial,
            "metrics_per_run": len(expected_metrics or ())}


def main() -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_mlflow_logging import build_run_dir, set_traces

    load_at_start = os.getloadavg()[0]
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
            from mlflow.tracking import MlflowClient

            from pytest_genai.runlog import Tracking, read_run, write_record
            from pytest_genai.tracking.mlflow_store import log_run_dir
            from pytest_genai.tracking.mlflow_traces import TraceContext, build_traces, log_traces

            uri = creds["MLFLOW_TRACKING_URI"]
            big = root / "big"
            big.mkdir()
            run_dir = build_run_dir(big)
            size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
            set_traces(run_dir, False)  # the 5 s target is the run; the traces are timed below
            times = []
            for i in range(ROUNDS):
                write_record(run_dir, read_run(run_dir, with_results=False).with_tracking(**vars(Tracking())))
                t0 = time.perf_counter()
                log_run_dir(run_dir, uri, f"bench-{i}")
                times.append(time.perf_counter() - t0)

            import bench_mlflow_logging

            bench_mlflow_logging.N = TRACED
            traced_root = root / "traced"
            traced_root.mkdir()
            traced_dir = build_run_dir(traced_root)
            timed: dict[bool, list[float]] = {False: [], True: []}
            for i in range(TRACE_ROUNDS):  # interleaved, so machine noise hits both alike
                for on in (False, True):
                    set_traces(traced_dir, on)
                    write_record(traced_dir, read_run(traced_dir, with_results=False).with_tracking(**vars(Tracking())))
                    t0 = time.perf_counter()
                    log_run_dir(traced_dir, uri, f"bench-traced-{on}-{i}")
                    timed[on].append(time.perf_counter() - t0)
                    assert read_run(traced_dir, with_results=False).tracking.traces == (TRACED if on else 0)
            per_case = (statistics.median(timed[True]) - statistics.median(timed[False])) / TRACED * 1000

            # the trace writers alone, on the same 500 traces: the batch endpoint vs MLflow's per-trace calls
            record_ = read_run(traced_dir)
            client = MlflowClient()
            exp_id = client.create_experiment("bench-trace-writers")
            writers: dict[str, float] = {}
            for batch in (True, False):
                run_id = client.create_run(exp_id).info.run_id
                traces = build_traces(record_.results, TraceContext(exp_id, run_id), time.time() * 1000)
                t0 = time.perf_counter()
                how = log_traces(uri, traces, batch=batch)
                writers[how] = (time.perf_counter() - t0) / len(traces) * 1000
            assert set(writers) == {"batch", "api"}, f"the server did not take the batch: {writers}"

            bench_mlflow_logging.N = SMALL  # the concurrent sessions log with traces, as a session does by default
            small_root = root / "small"
            small_root.mkdir()
            small = build_run_dir(small_root)
            lone, loads = [], []
            for k in range(LOAD_ROUNDS):  # interleaved, so machine noise hits both alike
                lone += [concurrent_logging(small, root, 1, f"one{k}-{i}", folder) for i in range(LONE_ROUNDS)]
                loads.append(concurrent_logging(small, root, SESSIONS, f"many{k}", folder))
        finally:
            env.__exit__(None, None, None)
            stop_server(folder)
    for many in loads:
        if many["failed_processes"]:
            print(f"{many['failed_processes']} of {SESSIONS} logging processes failed:\n{many['first_failure']}",
                  file=sys.stderr)
    lone_cpu = statistics.median(c for r in lone for c in r["cpu_s"])
    lone_wall = statistics.median(r["wall_s"] for r in lone)
    lone_machine = statistics.median(r["machine_cpu_s"] for r in lone)
    lone_stack = statistics.median(r["stack_cpu_s"] for r in lone)
    many_cpus = [c for many in loads for c in many["cpu_s"]]
    many_cpu = statistics.median(many_cpus)
    many_wall = statistics.median(many["wall_s"] for many in loads)
    cores = os.cpu_count() or 1
    return {
        "cases": N, "run_dir_mb": size / 1e6, "server_start_s": start_s, "log_median_s": statistics.median(times),
        "log_min_s": min(times), "log_max_s": max(times), "rounds": ROUNDS, "load_avg_1min_at_start": load_at_start,
        # case traces: log_run_dir with traces on vs off, and the two writers alone
        "traced_cases": TRACED, "trace_rounds": TRACE_ROUNDS, "server_traces_ms_per_case": per_case,
        "traces_off_median_s": statistics.median(timed[False]), "traces_on_median_s": statistics.median(timed[True]),
        "batch_writer_ms_per_case": writers["batch"], "per_trace_writer_ms_per_case": writers["api"],
        # 20 sessions at once vs one alone
        "concurrent_sessions": SESSIONS, "concurrent_cases_each": SMALL, "load_rounds": LOAD_ROUNDS,
        "lone_sessions": len(lone),
        "concurrent_failed_processes": sum(m["failed_processes"] for m in loads),
        "concurrent_lost_runs": sum(m["lost_runs"] for m in loads),
        "concurrent_partial_runs": sum(m["partial_runs"] for m in loads),
        "concurrent_runs_found": sum(m["runs_found"] for m in loads),
        "concurrent_partial_why": [why for m in loads for why in m["partial"]][:5],  # what was missing, if any
        "metrics_per_run": min(m["metrics_per_run"] for m in loads),
        "lone_lost_or_partial_runs": sum(r["lost_runs"] + r["partial_runs"] + r["failed_processes"] for r in lone),
        "lone_client_cpu_s": lone_cpu, "concurrent_client_cpu_median_s": many_cpu,
        "concurrent_client_cpu_max_s": max(many_cpus) if many_cpus else float("nan"),
        "client_cpu_vs_lone": many_cpu / lone_cpu,
        "one_session_log_s": lone_wall, "concurrent_wall_s": many_wall,
        "concurrent_log_median_s": statistics.median(s for m in loads for s in m["log_s"]),
        "concurrent_vs_one": many_wall / lone_wall,
        # the CPU one session costs (its client, the server's processes and PostgreSQL), and the lowest wall ratio
        # that CPU allows on this machine's cores: N sessions' CPU spread over every core, against one session's
        # wall; the whole machine's busy CPU beside it (on a shared machine, other work counts there too)
        "one_session_stack_cpu_s": lone_stack, "cores": cores,
        "concurrent_stack_cpu_s": statistics.median(m["stack_cpu_s"] for m in loads),
        "cpu_floor_vs_one": SESSIONS * lone_stack / cores / lone_wall,
        "one_session_machine_cpu_s": lone_machine,
        "concurrent_machine_cpu_s": statistics.median(m["machine_cpu_s"] for m in loads),
    }


if __name__ == "__main__":
    json.dump(record("server_logging", main()), sys.stdout, indent=2)
    print()
