"""An interrupted session's process ends (issue 24, item 4: one Ctrl-C stops a session, pool, threads and all).
Once the session has closed with its record written, a process still alive `EXIT_GRACE_S` later (a non-daemon
thread a pipeline left running keeps Python from exiting) says which threads hold it, prints their stacks and exits
with pytest's INTERRUPTED status. It never ends a caller that ran `pytest.main` and went on, nor the process around
a session run inside another (pytester)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_genai import interrupts
from pytest_genai.run_folder import RUN_FILE
from pytest_genai.runlog import INTERRUPTED, read_run
from test_durability import Eval, finish

ENDING = "genai: the session was interrupted and its run folder"


def test_a_new_session_stands_an_armed_watchdog_down() -> None:
    """A caller that runs pytest.main again after an interrupted one: its new session is not cut short."""
    interrupts.arm_exit_watchdog(2, None, grace_s=3600)
    assert interrupts.exit_watchdog_armed()
    assert not interrupts._caller_went_on(threading.main_thread())  # this test runs inside pytest
    interrupts.session_opened()
    try:
        assert not interrupts.exit_watchdog_armed()
    finally:
        interrupts.session_closed()


def test_a_session_interrupted_inside_another_process_session_arms_nothing(pytester: pytest.Pytester) -> None:
    """pytester's in-process session: the process is the outer pytest's, which goes on; nothing may end it."""
    pytester.makepyfile(leaky_pipeline='''
from pytest_genai import Answer

def factory(config):
    def pipeline(case):
        if case.id == "c2":
            raise KeyboardInterrupt
        return Answer(text="x")
    return pipeline
''')
    pytester.path.joinpath("qa.jsonl").write_text("".join(json.dumps({"id": f"c{i}", "question": "q?", "answers": ["x"]})
                                                          + "\n" for i in range(5)))
    pytester.path.joinpath("genai.yaml").write_text(
        "version: 1\nseed: 1\npipeline: leaky_pipeline:factory\neval: {set: qa.jsonl}\n"
        "tracking: {enabled: false, results_dir: runs}\nenv: {lock_file: none.lock}\n")
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess("--genai-config", "genai.yaml", "-p", "no:cacheprovider", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    assert "interrupted run" in result.stdout.str()
    assert not interrupts.exit_watchdog_armed()


@pytest.mark.slow  # the real grace: about 15 s
@pytest.mark.parametrize("leak", ["GENAI_LEAK", "GENAI_LEAK_POOL"], ids=["thread", "executor"])
def test_an_interrupted_session_held_by_a_thread_still_ends(tmp_path: Path, leak: str) -> None:
    """Without the watchdog the session prints its summary and then waits forever at exit: for a non-daemon thread,
    or (Python's own `threading._shutdown`, outside pytest) for an executor's thread whose call never returns."""
    ev = Eval(tmp_path / "proj")
    proc = ev.start(GENAI_CASE_S="0.1", **{leak: "leaky-client-worker"})
    ev.wait_for_cases(proc, 4)
    proc.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    out = finish(proc, timeout=interrupts.EXIT_GRACE_S + 40)
    took = time.monotonic() - signalled
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert f"{ENDING} " in out, out[-3000:]
    if leak == "GENAI_LEAK":  # an executor's threads are daemons: Python joins them all the same
        assert "held by non-daemon threads: leaky-client-worker" in out, out[-3000:]
    assert "Where its threads are:" in out and "most recent call first" in out  # the stacks
    assert took < interrupts.EXIT_GRACE_S + 30, took
    (run_dir,) = ev.run_dirs()
    record = read_run(run_dir)
    assert record.status == INTERRUPTED and 4 <= len(record.results) < 20
    assert json.loads((run_dir / RUN_FILE).read_text())["status"] == INTERRUPTED  # the final record, written


CALLER = '''
import time
import pytest
from pytest_genai import interrupts

interrupts.EXIT_GRACE_S = 5.0  # shortened, still well past pytest's own close; the caller goes on longer
code = pytest.main(["--genai-config", "genai.yaml", "-p", "no:cacheprovider", "-p", "no:randomly"])
print("pytest.main returned", int(code), flush=True)
time.sleep(8)
print("the caller went on", flush=True)
'''


@pytest.mark.slow
def test_a_caller_that_goes_on_after_an_interrupted_pytest_main_is_not_ended(tmp_path: Path) -> None:
    ev = Eval(tmp_path / "proj")
    (ev.root / "caller.py").write_text(CALLER)
    ev.before = set(ev.run_dirs())
    proc = subprocess.Popen([sys.executable, "caller.py"], cwd=ev.root, env=ev.env(GENAI_CASE_S="0.1"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ev.wait_for_cases(proc, 3)
    proc.send_signal(signal.SIGINT)
    out = finish(proc, timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert "pytest.main returned 2" in out and "the caller went on" in out and ENDING not in out, out[-3000:]
