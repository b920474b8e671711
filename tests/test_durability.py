"""Durable runs: real pytest sessions in their own processes, killed by real signals and real crashes. Every case
that finished is on disk however the session ends (the journal); a session that dies reads as `interrupted` in
`show` and `runs`, is never a baseline; SIGTERM is Ctrl-C; two Ctrl-C give an `interrupted` run with the
finished cases. And the journal's own rules on a folder in this process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_genai.run_folder import LOCK_FILE, RESULTS_FILE, RUN_FILE, writer_alive
from pytest_genai.runlog import INTERRUPTED, RUNNING, read_run

N = 20
BIN = Path(sys.executable).parent

# Answers with the context's first word after GENAI_CASE_S; the case GENAI_DIE_AT dies as GENAI_DIE_HOW says;
# GENAI_LEAK names a non-daemon thread the factory leaves running (a client library's worker that never ends), or
# with GENAI_LEAK_POOL an executor's thread with a call that never returns (joined when Python exits).
PIPELINE = '''
import ctypes, os, signal, threading, time
from concurrent.futures import ThreadPoolExecutor
from pytest_genai import Answer, Usage

def factory(config):
    if os.environ.get("GENAI_LEAK"):
        threading.Thread(target=time.sleep, args=(3600,), name=os.environ["GENAI_LEAK"]).start()
    if os.environ.get("GENAI_LEAK_POOL"):
        ThreadPoolExecutor(1, thread_name_prefix=os.environ["GENAI_LEAK_POOL"]).submit(time.sleep, 3600)
    die_at, how = os.environ.get("GENAI_DIE_AT"), os.environ.get("GENAI_DIE_HOW")
    dying = dict(x.split(":") for x in os.environ.get("GENAI_DIE", "").split(",") if x)  # case:how, case:how
    delay = float(os.environ.get("GENAI_CASE_S", "0.02"))
    calls = os.environ.get("GENAI_CALLS")
    def pipeline(case):
        if calls:
            with open(calls, "a") as fh:
                fh.write(case.id + "\\n")
        if case.id == die_at or case.id in dying:
            how = dying.get(case.id, os.environ.get("GENAI_DIE_HOW"))
            if how == "exit":
                os._exit(7)
            if how == "segv":
                ctypes.string_at(0)
            if how == "kill":  # what the OOM killer sends
                os.kill(os.getpid(), signal.SIGKILL)
            if how == "hang":  # a call that never returns (blocked in a read, a deadlock)
                time.sleep(3600)
        time.sleep(delay)
        return Answer(text=case.context.split()[0], usage=Usage(5, 1))
    pipeline.concurrent = True  # thread-safe, no process-wide RNG: --genai-concurrency N puts it on a pool of N
    return pipeline
'''


class Eval:
    """An eval project in its own folder, run by `python -m pytest` in its own process group."""

    def __init__(self, root: Path, mlflow_uri: str | None = None) -> None:
        self.root = root
        self.before: set[Path] = set()
        (root / "evals").mkdir(parents=True)
        (root / "evals" / "qa.jsonl").write_text("".join(json.dumps(
            {"id": f"c{i:02d}", "question": f"question {i}?", "answers": [f"answer{i}"],
             "context": f"answer{i} is the answer"}) + "\n" for i in range(N)))
        (root / "durable_pipeline.py").write_text(PIPELINE)
        tracking = {"uri": mlflow_uri, "experiment": "durable"} if mlflow_uri else {"enabled": False}
        (root / "genai.yaml").write_text(yaml.safe_dump({
            "version": 1, "seed": 3, "pipeline": "durable_pipeline:factory", "eval": {"set": "evals/qa.jsonl"},
            "gates": {"em": ">= 0.9"}, "tracking": {**tracking, "results_dir": "runs"}, "env": {"lock_file": "none.lock"}}))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
        env.update(PYTHONPATH=str(self.root), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONFAULTHANDLER="1",
                   **extra)
        return env

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        self.before = set(self.run_dirs())
        return subprocess.Popen([sys.executable, "-m", "pytest", "--genai-config", "genai.yaml", "-p", "no:cacheprovider",
                                 "-p", "no:randomly", *args], cwd=self.root, env=self.env(**env), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def pytest(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "--genai-config", "genai.yaml", "-p", "no:cacheprovider",
                               "-p", "no:randomly", *args], cwd=self.root, env=self.env(**env), text=True,
                              capture_output=True, timeout=300)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "pytest-genai"), *args], cwd=self.root, env=self.env(), text=True,
                              capture_output=True, timeout=120)

    def run_dirs(self) -> list[Path]:
        root = self.root / "runs"
        return sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name) if root.is_dir() else []

    def journaled(self) -> int:
        """Cases in the journal of the session started last (a folder that was not there before it)."""
        dirs = [d for d in self.run_dirs() if d not in self.before]
        if not dirs or not (dirs[-1] / RESULTS_FILE).is_file():
            return 0
        return sum(1 for ln in (dirs[-1] / RESULTS_FILE).read_text().splitlines() if ln.strip())

    def wait_for_cases(self, proc: subprocess.Popen[str], n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.journaled() < n:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, f"{self.journaled()} cases journaled after {timeout} s"
            time.sleep(0.05)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        stacks = dump_stacks(proc)
        raise AssertionError(f"the session did not end within {timeout} s: {stacks[-12000:]}") from None


def dump_stacks(proc: subprocess.Popen[str]) -> str:
    """A session that hangs says where: each Python process of its group in turn gets SIGABRT, on which faulthandler
    (PYTHONFAULTHANDLER, Eval.env) prints its threads' stacks; then the group is killed."""
    group = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(proc.pid)], capture_output=True, text=True).stdout
    for line in reversed(group.splitlines()):  # the workers, then the controller
        if "python" in line:
            try:
                os.kill(int(line.split()[0]), signal.SIGABRT)
            except ProcessLookupError:
                pass
            time.sleep(0.5)  # one at a time: the dumps share the pipe
    try:
        out = proc.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
    return f"{group}\n{out}"


def results_of(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in (run_dir / RESULTS_FILE).read_text().splitlines() if ln.strip()]


@pytest.mark.slow  # a pytest session per way of dying
@pytest.mark.parametrize("how", ["exit", "segv", "kill"])
def test_a_session_that_dies_keeps_every_finished_case_and_reads_interrupted(tmp_path: Path, how: str) -> None:
    ev = Eval(tmp_path / "proj")
    proc = ev.start(GENAI_DIE_AT="c05", GENAI_DIE_HOW=how)
    out = finish(proc)
    assert proc.returncode != 0 and proc.returncode != 2, out[-3000:]
    (run_dir,) = ev.run_dirs()
    assert [r["id"] for r in results_of(run_dir)] == [f"c{i:02d}" for i in range(5)], out[-2000:]
    assert all(r["answer"] == f"answer{i}" for i, r in enumerate(results_of(run_dir)))
    assert json.loads((run_dir / RUN_FILE).read_text())["status"] == RUNNING  # as the dead session left it
    assert not writer_alive(run_dir)
    record = read_run(run_dir)
    assert record.status == INTERRUPTED and record.partial and len(record.results) == 5

    shown = ev.cli("show", str(run_dir))
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert f"status {INTERRUPTED}" in shown.stdout and "5 of 20 cases finished" in shown.stdout, shown.stdout

    upload = ev.cli("upload", str(run_dir))
    assert upload.returncode == 2 and "was left by a session that died before its record" in upload.stderr, upload.stderr
    assert f"--genai-resume {run_dir.name}" in upload.stderr
    listed = ev.cli("runs")
    assert listed.returncode == 0 and f"  {run_dir.name}  {INTERRUPTED}  5 of 20 cases" in listed.stdout, listed.stdout + listed.stderr

    # never a baseline: the next run compares with no earlier complete run
    again = subprocess.run([sys.executable, "-m", "pytest", "--genai-config", "genai.yaml", "-p", "no:cacheprovider",
                            "--genai-baseline", "previous"], cwd=ev.root, env=ev.env(), text=True,
                           capture_output=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "no earlier complete run of this eval set" in again.stdout, again.stdout[-3000:]


@pytest.mark.slow
def test_sigterm_is_ctrl_c_the_run_is_interrupted_logged_so_and_listed(tmp_path: Path, mlflow_uri: str) -> None:
    ev = Eval(tmp_path / "proj", mlflow_uri)
    proc = ev.start("--genai-concurrency", "1", GENAI_CASE_S="0.2")
    ev.wait_for_cases(proc, 3)
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    out = finish(proc)
    assert proc.returncode == 2, out[-3000:]  # pytest's "interrupted"
    assert time.monotonic() - started < 20, out[-3000:]
    (run_dir,) = ev.run_dirs()
    data = json.loads((run_dir / RUN_FILE).read_text())
    assert data["status"] == INTERRUPTED and not (run_dir / LOCK_FILE).exists()
    done = results_of(run_dir)
    assert 3 <= len(done) < N and data["metrics"]["cases_evaluated"] == len(done)
    assert not [r for r in done if r.get("error")]  # the unrun cases are not counted as errors
    assert f"{INTERRUPTED} run: {len(done)} of {N}" in out, out[-3000:]

    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=mlflow_uri).get_run(data["tracking"]["run_id"])
    assert run.data.tags["genai.status"] == INTERRUPTED and run.data.tags["genai.partial"] == "true"
    assert run.data.tags["genai.gates_passed"] == "false"  # an interrupted run passed nothing


@pytest.mark.slow
def test_under_xdist_sigterm_to_the_job_keeps_the_finished_cases(tmp_path: Path) -> None:
    """-n 2, the whole process group signalled (what a CI runner and a terminal's Ctrl-C do): the controller
    journals what the workers finished and records the run as interrupted."""
    ev = Eval(tmp_path / "proj")
    proc = ev.start("-n", "2", GENAI_CASE_S="0.3")
    ev.wait_for_cases(proc, 4)
    os.killpg(proc.pid, signal.SIGTERM)
    out = finish(proc, timeout=60)
    (run_dir,) = ev.run_dirs()
    data = json.loads((run_dir / RUN_FILE).read_text())
    assert data["status"] == INTERRUPTED, out[-3000:]
    assert 4 <= len(results_of(run_dir)) == data["metrics"]["cases_evaluated"] < N


@pytest.mark.slow
@pytest.mark.parametrize("gaps", [(0.1,), (1.0,), (0.05, 0.05), (0.02, 0.02)])
def test_two_ctrl_c_give_an_interrupted_run_with_the_finished_cases(tmp_path: Path, mlflow_uri: str,
                                                                    gaps: tuple[float, ...]) -> None:
    """Two Ctrl-C (0.1 s or 1 s apart), and three in quick succession (the third may land inside pytest's own
    handling of the first, which then never sets its exit status: it was recorded `complete` with the unrun cases
    as errors)."""
    ev = Eval(tmp_path / "proj", mlflow_uri)
    proc = ev.start("--genai-concurrency", "4", GENAI_CASE_S="0.3")
    ev.wait_for_cases(proc, 4)
    os.kill(proc.pid, signal.SIGINT)
    for gap in gaps:
        time.sleep(gap)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
    out = finish(proc)
    (run_dir,) = ev.run_dirs()
    record = read_run(run_dir)
    assert record.status == INTERRUPTED, out[-3000:]
    assert 4 <= len(record.results) < N and not [r for r in record.results if r.error], out[-3000:]
    assert record.metrics.get("cases_evaluated") == len(record.results), out[-3000:]  # the final record, not the journal's
    assert not (run_dir / LOCK_FILE).exists()
    print(out[-2500:])


@pytest.mark.slow
@pytest.mark.parametrize(("concurrency", "hung"), [("1", "c06"), ("4", "c06"), ("4", "c00")])
def test_one_ctrl_c_stops_a_session_with_a_hung_case_keeping_the_finished_ones(tmp_path: Path, concurrency: str,
                                                                                hung: str) -> None:
    """A case that never returns: Ctrl-C still ends the session (the pool's threads are daemons; one case at a time
    runs in the main thread, which the interrupt reaches), with every finished case recorded. The first case hung
    on a pool: pytest has reported no item when the interrupt comes, and the pool's finished cases are the run
    (they were left to the journal alone, the session saying "no case ran")."""
    ev = Eval(tmp_path / "proj")
    proc = ev.start("--genai-concurrency", concurrency, GENAI_DIE_AT=hung, GENAI_DIE_HOW="hang")
    # on a pool the cases after the hung one finish too, and are journaled as they finish (not when pytest
    # reports them, in order, which would wait for the hung one forever)
    finished = int(hung[1:]) if concurrency == "1" else N - 1
    ev.wait_for_cases(proc, finished)
    time.sleep(0.3)  # the hung case has started
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    out = finish(proc, timeout=60)
    took = time.monotonic() - started
    print(f"ended {took:.2f} s after Ctrl-C (concurrency {concurrency})")
    assert proc.returncode == 2, out[-3000:]
    (run_dir,) = ev.run_dirs()
    record = read_run(run_dir)
    assert record.status == INTERRUPTED and hung not in {r.id for r in record.results}
    assert len(record.results) == finished and not [r for r in record.results if r.error]
    assert record.metrics.get("cases_evaluated") == finished, out[-3000:]  # the session's record, not the journal's


def test_the_journal_keeps_each_case_as_it_finishes_and_a_dead_writer_reads_interrupted(tmp_path: Path) -> None:
    from pytest_genai.runlog import Provenance, RunRecord
    from pytest_genai.tracking.journal import Journal, wait_synced
    from pytest_genai.types import CaseResult

    record = RunRecord(schema_version=2, status=RUNNING, started_at="2026-12-07T05:00:00.000Z",
                       ended_at="2026-12-07T05:00:00.000Z", provenance=Provenance(config_hash="c" * 64, seed=1))
    journal = Journal.open(tmp_path / "runs", "c" * 64, record)
    run_dir = journal.run_dir
    assert read_run(run_dir).status == RUNNING and writer_alive(run_dir)  # this process holds the lock
    for i in range(3):
        journal.append(CaseResult(id=f"c{i}", question="q", answer=f"a{i}", answers=("a",), em=0.0, f1=0.0,
                                  latency_ms=1.0, input_tokens=1, output_tokens=1, cost_usd=0.0, seed=i))
        assert [r.id for r in read_run(run_dir).results] == [f"c{j}" for j in range(i + 1)]  # at once, not at the end
    assert wait_synced(journal, timeout=1.5)  # fsync'd within the bound
    journal.close(final=False)  # the session ends without its record: as if it died
    assert read_run(run_dir).status == INTERRUPTED and not writer_alive(run_dir)
    shutil.rmtree(run_dir)


def _result(i: int, answer: str = "") -> Any:
    from pytest_genai.types import CaseResult

    return CaseResult(id=f"c{i}", question="q", answer=answer or f"a{i}", answers=("a",), em=0.0, f1=0.0,
                      latency_ms=1.0, input_tokens=1, output_tokens=1, cost_usd=0.0, seed=i)


def test_a_torn_last_line_is_skipped_and_cut_on_resume_a_bad_line_before_it_is_an_error(tmp_path: Path) -> None:
    from pytest_genai.runlog import Provenance, RunLogError, RunRecord, read_results
    from pytest_genai.tracking.journal import Journal

    record = RunRecord(schema_version=2, status=RUNNING, started_at="2026-12-07T05:00:00.000Z",
                       ended_at="2026-12-07T05:00:00.000Z", provenance=Provenance(config_hash="c" * 64, seed=1))
    journal = Journal.open(tmp_path / "runs", "c" * 64, record)
    run_dir, results = journal.run_dir, journal.run_dir / RESULTS_FILE
    journal.append(_result(1))
    journal.append(_result(2, answer="é" * 50))
    journal.close(final=False)
    whole = results.read_bytes()
    results.write_bytes(whole[:-40])  # the session died mid-write: c2's line cut inside a character
    assert [r.id for r in read_results(run_dir)] == ["c1"]
    assert read_run(run_dir).status == INTERRUPTED  # `show` reads the folder
    again = Journal.reopen(run_dir, record)  # --genai-resume: the torn line goes, the next case starts a line
    again.append(_result(2))
    again.close(final=False)
    assert [r.id for r in read_results(run_dir)] == ["c1", "c2"] and results.read_bytes().endswith(b"\n")
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(lines[0][:-20] + b"\n" + lines[1])  # a bad line in the middle: not a torn write
    with pytest.raises(RunLogError, match=r"results.jsonl:1: not a case result"):
        read_results(run_dir)


def test_a_write_that_fails_on_a_full_disk_leaves_no_torn_line(tmp_path: Path) -> None:
    """A real EFBIG (RLIMIT_FSIZE in a child process, as a full disk): the part of the line that fit is cut back."""
    script = f"""
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_durability import _result
from pytest_genai.runlog import Provenance, RunRecord
from pytest_genai.tracking.journal import Journal
record = RunRecord(schema_version=2, status="running", started_at="2026-12-07T05:00:00.000Z",
                   ended_at="2026-12-07T05:00:00.000Z", provenance=Provenance(config_hash="c" * 64, seed=1))
journal = Journal.open(Path({str(tmp_path / "runs")!r}), "c" * 64, record)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
journal.append(_result(1))
journal.append(_result(2, answer="y" * 200_000))
journal.append(_result(3))
print(journal.errors)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "c2" in out.stdout and "File too large" in out.stdout, out.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert [json.loads(line)["id"] for line in (run_dir / RESULTS_FILE).read_bytes().splitlines()] == ["c1", "c3"]


SAME = ("em", "f1", "tokens_input_total", "tokens_output_total", "cost_total_usd", "cases_evaluated", "error_rate",
        "cases_total")


@pytest.mark.slow
def test_resume_runs_only_the_unfinished_cases_into_the_same_run_and_equals_an_uninterrupted_one(
        tmp_path: Path, mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    ev = Eval(tmp_path / "proj", mlflow_uri)
    whole = ev.pytest()
    assert whole.returncode == 0, whole.stdout[-3000:]
    (reference,) = ev.run_dirs()
    expected = json.loads((reference / RUN_FILE).read_text())

    calls = tmp_path / "calls.log"
    proc = ev.start("--genai-concurrency", "1", GENAI_CASE_S="0.2", GENAI_CALLS=str(calls))
    ev.wait_for_cases(proc, 4)
    os.kill(proc.pid, signal.SIGTERM)
    assert finish(proc) is not None and proc.returncode == 2
    interrupted = ev.run_dirs()[-1]
    first = json.loads((interrupted / RUN_FILE).read_text())
    assert first["status"] == INTERRUPTED and first["tracking"]["run_id"]
    finished = {r["id"] for r in results_of(interrupted)}
    calls.write_text("")

    # by its MLflow run id: the local folder it was logged from is the one completed
    resumed = ev.pytest("--genai-resume", first["tracking"]["run_id"], GENAI_CALLS=str(calls))
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resuming {interrupted.name}: {len(finished)} of {N} cases finished there" in resumed.stdout
    assert sorted(calls.read_text().split()) == sorted({f"c{i:02d}" for i in range(N)} - finished)  # only those ran
    assert len(ev.run_dirs()) == 2  # no new folder
    done = json.loads((interrupted / RUN_FILE).read_text())
    assert done["status"] == "complete" and done["started_at"] == first["started_at"]
    assert [r["id"] for r in results_of(interrupted)] == [f"c{i:02d}" for i in range(N)]
    assert {k: done["metrics"][k] for k in SAME} == {k: expected["metrics"][k] for k in SAME}
    assert done["cis"]["f1"] == expected["cis"]["f1"]
    run = MlflowClient(tracking_uri=mlflow_uri).get_run(done["tracking"]["run_id"])
    assert run.data.tags["genai.resumed_from"] == first["tracking"]["run_id"]
    assert run.data.tags["genai.resumed_cases"] == str(len(finished)) and run.data.tags["genai.status"] == "complete"

    again = ev.pytest("--genai-resume", interrupted.name)
    assert again.returncode == 4 and "is a complete run, not an interrupted one: there is nothing to resume" in again.stderr


@pytest.mark.slow
def test_resume_refuses_other_inputs_naming_what_changed(tmp_path: Path) -> None:
    ev = Eval(tmp_path / "proj")
    died = ev.pytest(GENAI_DIE_AT="c03", GENAI_DIE_HOW="exit")
    assert died.returncode == 7
    (run_dir,) = ev.run_dirs()
    config = yaml.safe_load((ev.root / "genai.yaml").read_text())
    config["seed"] = 4
    (ev.root / "genai.yaml").write_text(yaml.safe_dump(config))
    refused = ev.pytest("--genai-resume", str(run_dir))
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert f"--genai-resume: {run_dir.name} was run with other inputs" in refused.stderr
    assert "config_hash: " in refused.stderr and "eval_set.hash" not in refused.stderr
    assert ev.pytest("--genai-resume", "no-such-run").stderr.count("--genai-resume no-such-run: no such run folder") == 1
    assert len(ev.run_dirs()) == 1 and read_run(run_dir).status == INTERRUPTED  # untouched


@pytest.mark.slow  # ten sessions at once
def test_sessions_starting_together_on_a_new_sqlite_store_are_all_recorded(tmp_path: Path) -> None:
    """The first use of a sqlite store creates and migrates it: ten sessions doing that at once corrupted it (10 of
    10 TRACKING FAILED, a half-migrated schema). Its creation is serialized by a lock on its folder."""
    from mlflow.tracking import MlflowClient

    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    projects = []
    for i in range(10):
        ev = Eval(tmp_path / f"proj{i}", uri)
        projects.append((ev, ev.start()))
    outs = [(ev, proc, finish(proc, timeout=600)) for ev, proc in projects]
    failed = [out[-1500:] for _, proc, out in outs if proc.returncode != 0]
    assert not failed, "\n\n".join(failed)
    assert all("TRACKING FAILED" not in out for _, _, out in outs)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("durable").experiment_id], max_results=100)
    assert len(runs) == 10 and {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
def test_isolated_cases_cost_only_themselves_when_their_process_dies(tmp_path: Path) -> None:
    """eval.isolate: process: a segfault and an os._exit in two cases are those cases' errors, naming the signal
    and the exit code; every other case is answered and the run is complete."""
    ev = Eval(tmp_path / "proj")
    config = yaml.safe_load((ev.root / "genai.yaml").read_text())
    config["eval"]["isolate"] = "process"
    config["eval"]["case_timeout_s"] = 5
    (ev.root / "genai.yaml").write_text(yaml.safe_dump(config))
    out = ev.pytest("--genai-concurrency", "4", GENAI_DIE="c05:segv,c11:exit,c15:hang")
    assert out.returncode == 1, out.stdout[-3000:]
    assert ("one case at a time, each in a child process (eval.isolate: process) (--genai-concurrency and "
            "llm.batch_size are not used with it)") in out.stdout
    (run_dir,) = ev.run_dirs()
    record = read_run(run_dir)
    assert record.status == "complete" and len(record.results) == N
    errors = {r.id: r.error for r in record.results if r.error}
    assert errors == {
        "c05": "ChildProcessError: case c05's process killed by SIGSEGV (eval.isolate: process; the session goes on "
               "in a new one)",
        "c11": "ChildProcessError: case c11's process exited with code 7 (eval.isolate: process; the session goes on "
               "in a new one)",
        "c15": "TimeoutError: case c15 did not finish within eval.case_timeout_s = 5 s"}, errors
    assert all(r.answer == f"answer{int(r.id[1:])}" for r in record.results if not r.error)


@pytest.mark.slow
def test_an_isolated_case_dies_with_its_session(tmp_path: Path) -> None:
    """eval.isolate: process, a case that hangs, the session SIGKILLed: its child must not live on (Linux:
    PR_SET_PDEATHSIG)."""
    ev = Eval(tmp_path / "proj")
    config = yaml.safe_load((ev.root / "genai.yaml").read_text())
    config["eval"]["isolate"] = "process"
    (ev.root / "genai.yaml").write_text(yaml.safe_dump(config))
    marker = str(ev.root / "marker")
    Path(marker).mkdir()
    proc = ev.start("--rootdir", marker, GENAI_DIE_AT="c03", GENAI_DIE_HOW="hang")
    ev.wait_for_cases(proc, 3)
    time.sleep(0.5)
    mine = _processes_with(marker)
    assert len(mine) >= 2, mine  # the session and its case's child
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc)
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _processes_with(marker)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"the isolated case's process outlived its session: {left}"


def _processes_with(marker: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out
