"""No run left dangling (issue 24, item 11). A session creates its MLflow run only at its end, when it logs the run
folder (itself, or its warm tracking worker); a process killed inside that logging left the run RUNNING for good.
Now the run carries its owner (`genai.owner.*`: host digest, boot, pid, the pid's start time) and the next command
that reads it (`runs`, `show`, `merge`, a baseline by run id) marks it interrupted, terminated KILLED, once its
owner is gone. Real pytest sessions killed by a real SIGKILL, real processes as owners, a real sqlite store."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from pytest_genai import names
from test_durability import Eval as DurableEval
from pytest_genai.tracking.owner import ALIVE, ELSEWHERE, GONE, owner_state, owner_tags, process_start, settle

BIN = Path(sys.executable).parent
PIPELINE = '''
from pytest_genai import Answer, Usage

def factory(config):
    def pipeline(case):
        return Answer(text=case.context.split()[0], usage=Usage(5, 1))
    return pipeline
'''


class Eval(DurableEval):
    """An eval project logging to a sqlite store, run by `python -m pytest` in its own process group (env, start,
    pytest, cli and run_dirs: test_durability's)."""

    def __init__(self, root: Path, uri: str, n: int) -> None:
        self.root, self.uri, self.before = root, uri, set()
        (root / "evals").mkdir(parents=True)
        (root / "evals" / "qa.jsonl").write_text("".join(json.dumps(
            {"id": f"c{i:03d}", "question": f"question {i}?", "answers": [f"answer{i}"],
             "context": f"answer{i} is the answer"}) + "\n" for i in range(n)))
        (root / "dangling_pipeline.py").write_text(PIPELINE)
        (root / "genai.yaml").write_text(yaml.safe_dump({
            "version": 1, "seed": 3, "pipeline": "dangling_pipeline:factory", "eval": {"set": "evals/qa.jsonl"},
            "gates": {"em": ">= 0.9"}, "tracking": {"uri": uri, "experiment": "dangling", "results_dir": "runs"},
            "env": {"lock_file": "none.lock"}}))



def kill_while_logging(proc: subprocess.Popen[str], db: Path, *, group: bool, known: set[str] = frozenset()) -> str:
    """SIGKILL the session (`group`: with its tracking worker) as soon as the store holds a RUNNING run other than
    `known`: the moment it is being logged. The store is read with sqlite itself, read-only, so the test's reads
    take no MLflow lock the session's logging would wait for. Returns that run's id."""
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, f"the session ended before its run was seen RUNNING: {proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, "no run was logged within 300 s"
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5) as con:
                running = {r for (r,) in con.execute("select run_uuid from runs where status = 'RUNNING'")} - known
        except sqlite3.Error:
            running = set()
        if running:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            (run_id,) = running
            return run_id
        time.sleep(0.005)


def running_runs(client: MlflowClient, exp: str) -> list[str]:
    """Every RUNNING run of the experiment, deleted ones included."""
    return [r.info.run_id for r in client.search_runs([exp], run_view_type=ViewType.ALL) if r.info.status == "RUNNING"]


@pytest.fixture
def store(tmp_path: Path, mlflow_uri: str) -> tuple[Path, str]:
    return Path(mlflow_uri[len("sqlite:///"):]), mlflow_uri


@pytest.mark.slow  # a pytest session killed per way of logging, then the CLI in processes
@pytest.mark.parametrize("worker", [True, False], ids=["warm-tracking-worker", "in-process"])
def test_a_session_killed_while_logging_is_marked_interrupted_by_the_next_command(
        tmp_path: Path, store: tuple[Path, str], worker: bool) -> None:
    db, uri = store
    ev = Eval(tmp_path / "proj", uri, 200)  # 200 case traces: the run is RUNNING for about half a second
    proc = ev.start(PYTEST_GENAI_TRACKING_WORKER="1" if worker else "0")
    run_id = kill_while_logging(proc, db, group=worker)  # the worker logs in its own process: both are killed
    client = MlflowClient(tracking_uri=uri)
    left = client.get_run(run_id)
    assert left.info.status == "RUNNING", "the session was killed after its logging ended"  # as it was left
    tags = left.data.tags
    assert tags[names.TAG_OWNER_PID].isdigit() and owner_state(tags) == GONE
    # the process that logs the run owns it: the session itself, or its warm tracking worker
    assert (tags[names.TAG_OWNER_PID] == str(proc.pid)) is not worker

    listed = ev.cli("runs")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (row,) = [ln for ln in listed.stdout.splitlines() if ln.startswith(run_id)]
    # the status column; an interrupted run passed nothing (its metrics are shown if the kill came after them)
    assert re.search(r"  interrupted  (.*  )?FAIL  ", row), listed.stdout
    assert (f"note: run {run_id} was left RUNNING by process {tags[names.TAG_OWNER_PID]}, which is gone (killed "
            "before its logging ended): marked interrupted (MLflow status KILLED)") in listed.stdout, listed.stdout
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.info.end_time
    assert run.data.tags[names.TAG_STATUS] == "interrupted" and run.data.tags[names.TAG_GATES_PASSED] == "false"
    assert run.data.tags[names.TAG_PARTIAL] == "true"
    again = ev.cli("runs")  # marked once: the next listing has nothing to say about it
    assert "note: run" not in again.stdout and again.returncode == 0
    (folder,) = ev.run_dirs()  # its run folder is complete, but not in MLflow: the same status column
    local = again.stdout.split("not logged to MLflow")[1].splitlines()
    assert local[1].split() == ["run", "folder", "status", "cases", "started", "(UTC)"]
    assert local[2].split()[:6] == [folder.name, "complete", "200", "of", "200", "cases"], again.stdout

    # killed as its logging began: none of its artifacts are there, and what reads it says why
    cut = f"MLflow run {run_id} has no run.json artifact (it is interrupted: its logging was cut short"
    shown = ev.cli("show", run_id, "--tracking-uri", uri)
    assert shown.returncode == 2 and cut in shown.stderr, shown.stdout + shown.stderr
    base = ev.pytest("--genai-baseline", run_id)
    assert base.returncode != 0 and cut in base.stdout + base.stderr, base.stdout[-3000:]

    # the session's run folder has the whole record: upload logs it anew and retires the cut run
    # (whether it names the cut run depends on the instant of the kill: right after the run's creation, or later)
    assert json.loads((folder / "run.json").read_text())["tracking"]["incomplete_run_id"] in (run_id, None)
    up = ev.cli("upload", str(folder))
    assert up.returncode == 0, up.stdout + up.stderr
    exp = client.get_experiment_by_name("dangling").experiment_id
    assert running_runs(client, exp) == []


@pytest.mark.slow  # three shard sessions, one killed, and two merges
def test_a_shard_killed_while_logging_is_left_out_of_the_merge_and_nothing_stays_running(
        tmp_path: Path, store: tuple[Path, str]) -> None:
    db, uri = store
    ev = Eval(tmp_path / "proj", uri, 200)
    first = ev.pytest("--genai-shard", "1/2", "--genai-group", "g")
    assert first.returncode == 0, first.stdout[-3000:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("dangling").experiment_id
    known = {r.info.run_id for r in client.search_runs([exp])}  # shard 1/2 and the group's parent (pending, RUNNING)
    proc = ev.start("--genai-shard", "2/2", "--genai-group", "g")
    cut = kill_while_logging(proc, db, group=True, known=known)
    assert client.get_run(cut).data.tags[names.TAG_SHARD] == "2/2"  # what it is, tagged when it was created

    merged = ev.cli("merge", "g")
    assert merged.returncode == 2, merged.stdout + merged.stderr
    assert "shard 2/2 is missing" in merged.stderr and f"shard 2/2 run {cut} is interrupted" in merged.stderr
    assert client.get_run(cut).info.status == "KILLED"

    again = ev.pytest("--genai-shard", "2/2", "--genai-group", "g")
    assert again.returncode == 0, again.stdout[-3000:]
    merged = ev.cli("merge", "g")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert running_runs(client, exp) == []
    parent = client.search_runs([exp], "tags.`genai.kind` = 'eval'")
    assert [(p.info.status, p.data.tags[names.TAG_STATUS]) for p in parent] == [("FINISHED", "complete")]


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def running_run(client: MlflowClient, exp: str, name: str, tags: dict[str, str]) -> str:
    return client.create_run(exp, run_name=name, tags={"mlflow.runName": name, names.TAG_KIND: "eval", **tags}).info.run_id


def test_only_a_run_whose_owner_process_is_gone_is_marked(store: tuple[Path, str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Owners that are real processes: alive (left RUNNING), killed (marked), a pid now used by another process
    (marked: its start time differs), another host (left, and said so), another boot of this host (marked), a
    shard group's parent waiting for its merge (no owner: left)."""
    _, uri = store
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("dangling")
    alive, killed = sleeper(), sleeper()
    try:
        ids = {
            "alive": running_run(client, exp, "alive", owner_tags(alive.pid)),
            "killed": running_run(client, exp, "killed", owner_tags(killed.pid)),
            "reused": running_run(client, exp, "reused", {**owner_tags(), names.TAG_OWNER_STARTED: "1"}),
            "elsewhere": running_run(client, exp, "elsewhere", {**owner_tags(alive.pid), names.TAG_OWNER_HOST: "0" * 16}),
            "rebooted": running_run(client, exp, "rebooted", {**owner_tags(alive.pid), names.TAG_OWNER_BOOT: "an-earlier-boot"}),
            "pending": running_run(client, exp, "pending", {names.TAG_GROUP: "g", names.TAG_STATUS: "pending"}),
        }
        killed.kill()
        killed.wait()
        assert process_start(killed.pid) is None and process_start(alive.pid)
        states = {k: owner_state(client.get_run(v).data.tags) for k, v in ids.items() if k != "pending"}
        assert states == {"alive": ALIVE, "killed": GONE, "reused": GONE, "elsewhere": ELSEWHERE, "rebooted": GONE}

        from pytest_genai.cli import main

        monkeypatch.chdir(tmp_path)  # no genai.yaml: the store and experiment from the command line
        assert main(["runs", "--tracking-uri", uri, "--experiment", "dangling"]) == 0
        out = capsys.readouterr().out
        status = {ln.split()[1]: ln.split()[2] for ln in out.splitlines() if ln.split()[:1] and ln.split()[0] in ids.values()}
        assert status == {"alive": "running", "killed": "interrupted", "reused": "interrupted",
                          "elsewhere": "running", "rebooted": "interrupted", "pending": "pending"}, out
        assert f"note: run {ids['elsewhere']} is RUNNING on another host (process {alive.pid} there): not checked " \
               "from here, left as it is" in out
        assert f"note: run {ids['alive']} is still being logged by process {alive.pid} on this host" in out
        assert {k: client.get_run(v).info.status for k, v in ids.items()} == {
            "alive": "RUNNING", "killed": "KILLED", "reused": "KILLED", "elsewhere": "RUNNING", "rebooted": "KILLED",
            "pending": "RUNNING"}
        # `show` of a run still being logged says by whom, instead of "no run.json"
        assert main(["show", ids["alive"], "--tracking-uri", uri]) == 2
        assert f"still being logged by process {alive.pid} on this host" in capsys.readouterr().err
        alive.kill()
        alive.wait()
        assert settle(client, [client.get_run(ids["alive"])])[ids["alive"]].marked
        assert client.get_run(ids["alive"]).info.status == "KILLED"
    finally:
        for p in (alive, killed):
            p.kill()
            p.wait()
