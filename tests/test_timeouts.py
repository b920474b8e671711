"""eval.case_timeout_s and eval.build_timeout_s on real sessions (their own processes: a hung thread is abandoned,
not stopped, so it must not outlive the test in the test runner)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

PIPELINE = '''
import os, time
from pytest_genai import Answer, Usage

def factory(config):
    if os.environ.get("GENAI_SLOW_BUILD"):
        time.sleep(60)
    class Pipeline:
        concurrent = True
        def __call__(self, case, seed=None):
            if case.id == "rome":
                time.sleep(60)
            return Answer(text=case.context.split()[0], usage=Usage(3, 1))
    return Pipeline()
'''


@pytest.fixture
def hanging(project: Any) -> Any:
    project.pytester.makepyfile(genai_hanging=PIPELINE)
    project.config.update(pipeline="genai_hanging:factory")
    project.config["eval"]["case_timeout_s"] = 1.5
    project.config["tracking"]["enabled"] = False
    return project


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_a_case_over_its_timeout_is_a_timeout_error_and_the_session_goes_on(hanging: Any, concurrency: str) -> None:
    hanging.write_config()
    result = hanging.run("--genai-config", "genai.yaml", "--genai-concurrency", concurrency, subprocess=True)
    out = result.stdout.str()
    assert result.ret == 1, out
    by_id = {r["id"]: r for r in hanging.last_results()}
    assert by_id["rome"]["error"] == "TimeoutError: case rome did not finish within eval.case_timeout_s = 1.5 s"
    assert [i for i, r in by_id.items() if r["error"] is None] == ["paris", "h2o", "moon"]
    assert hanging.summary()["status"] == "complete" and hanging.summary()["metrics"]["error_rate"] == 0.25


def test_a_factory_over_the_build_timeout_stops_the_session_naming_the_key(hanging: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hanging.config["eval"]["build_timeout_s"] = 1
    hanging.write_config()
    monkeypatch.setenv("GENAI_SLOW_BUILD", "1")
    result = hanging.run("--genai-config", "genai.yaml", subprocess=True)
    err = result.stderr.str()
    assert result.ret == 4, result.stdout.str() + err
    assert "eval.build_timeout_s" in err and "did not finish within eval.build_timeout_s = 1 s" in err, err
    assert hanging.run_dirs() == []  # no eval ran: no run recorded


@pytest.mark.parametrize("argv", [["models", "qa"], ["promote", "qa", "--from", "staging", "--to", "production"],
                                  ["rollback", "qa", "--alias", "production"]])
def test_a_tracking_server_that_never_answers_is_one_line_within_the_limit(tmp_path: Any, argv: list[str]) -> None:
    """A server that accepts the connection and never answers (the kernel's backlog does the accepting): the
    command stops at PYTEST_GENAI_TRACKING_TIMEOUT_S with one line naming the URI (it waited 248 s before)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        env = {**os.environ, "PYTEST_GENAI_TRACKING_TIMEOUT_S": "3"}
        started = time.monotonic()
        out = subprocess.run([str(Path(sys.executable).parent / "pytest-genai"), *argv, "--tracking-uri", uri],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
    print(f"{argv[0]}: {took:.1f} s")
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines == [f"pytest-genai {argv[0]}: no answer from the tracking store {uri} within 3 s (is the server up? "
                     "PYTEST_GENAI_TRACKING_TIMEOUT_S sets the limit)"], out.stderr


def test_a_tracking_server_that_is_down_is_one_line_naming_it(tmp_path: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    uri = f"http://127.0.0.1:{port}"
    out = subprocess.run([str(Path(sys.executable).parent / "pytest-genai"), "models", "qa", "--tracking-uri", uri],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [f"pytest-genai models: cannot reach the tracking store {uri}: "
                                               "connection refused"], out.stderr
