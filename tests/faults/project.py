"""The project every row of the catalogue starts from, and the ways a row is run: an in-process pytest session
(pytester), a pytest session in its own process (signals, crashes, hangs), or the `pytest-genai` command.

Five cases c1..c5 answered by `fault_pipeline:factory`, which misbehaves as $FAULT_PLAN says (`case:how,...`) and,
at build time, as $FAULT_BUILD says. Tracking is off unless a row turns it on: the suite is about what reaches the
run folder (results.jsonl, run.json) and what the user reads."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import json
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# imported here, in the test process, so that pytester's in-process sessions find them imported and keep them (it
# drops the modules a session imported when it ends: each run would import them again, and numpy cannot be)
for _module in ("numpy", "pytest_genai.cli", "pytest_genai.eval_plugin", "pytest_genai.session"):
    importlib.import_module(_module)

N = 5
IDS = tuple(f"c{i}" for i in range(1, N + 1))
CASES = [{"id": cid, "question": f"What is answer {cid}?", "answers": [f"answer{cid}"],
          "context": f"answer{cid} is the answer to question {cid}."} for cid in IDS]

# $FAULT_PLAN: `case:how,...`; $FAULT_BUILD: how the factory itself misbehaves.
PIPELINE = r'''
import ctypes, math, os, signal, sys, time
from pytest_genai import Answer, Usage

def answer(case, how):
    text = case.context.split()[0]
    if how == "raise":
        raise RuntimeError(f"the model server said no to {case.id}")
    if how == "none":
        return None
    if how == "int":
        return 42
    if how == "bytes":
        return b"\xff\xfe not text"
    if how == "text-bytes":
        return Answer(text=b"\xff\xfe", usage=Usage(3, 1))
    if how == "surrogate":
        return text + " \ud800 lone surrogate"
    if how == "control-chars":
        return text + " \x00\x1b[2J\x07\u202e reversed"
    if how == "huge":
        return text + " " + "x" * 1_000_000
    if how == "nan-latency":
        return Answer(text=text, latency_ms=float("nan"))
    if how == "float-tokens":
        return Answer(text=text, usage=Usage(2.5, 1))
    if how == "bad-contexts":
        return Answer(text=text, contexts=5, usage=Usage(3, 1))
    if how == "bad-timings":
        return Answer(text=text, timings={"llm_ms": "slow", "other": None}, usage=Usage(3, 1))
    if how == "cyclic-metadata":
        loop = {"name": "loop"}
        loop["self"] = loop
        return Answer(text=text, metadata={"loop": loop}, usage=Usage(3, 1))
    if how == "secret":
        return text + " and the key is sk-proj-abcdefghij0123456789abcd"
    if how == "recursion":
        def down(n):
            return down(n + 1)
        down(0)
    if how == "memory":
        raise MemoryError("could not allocate the KV cache")
    if how == "sysexit":
        sys.exit(3)
    if how == "keyboard":
        raise KeyboardInterrupt
    if how == "garbage-stdout":
        os.write(1, b"\xff\xfe\x00\x1b[2J garbage on fd 1\n")
        os.write(2, b"\xc3\x28 garbage on fd 2\n")
        print("a print \udcff from the pipeline", flush=True)
    if how == "chdir":
        os.chdir("/")
    if how == "exit":
        os._exit(7)
    if how == "segv":
        ctypes.string_at(0)
    if how == "kill":  # what the OOM killer sends
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "term":  # what a CI runner sends on cancel
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    if how == "int-signal":  # Ctrl-C
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    if how == "gil-hang":  # a call that never returns and never lets go of the GIL (C code: a backtracking regex)
        import re
        re.search(r"^(a+)+$", "a" * 40 + "b")
    if how == "hang":  # a call that never returns
        time.sleep(3600)
    if how == "big-answer":  # ~1 MB: more than a disk left with room for less
        return text + " " + "y" * 1_000_000
    return Answer(text=text, contexts=(case.context,), usage=Usage(3, 1))


def factory(config):
    build = os.environ.get("FAULT_BUILD")
    if build == "raise":
        raise RuntimeError("cannot load weights from /models/missing.bin")
    if build == "none":
        return None
    if build == "not-callable":
        return "a pipeline"
    if build == "hang":
        time.sleep(3600)

    plan = dict(x.split(":", 1) for x in os.environ.get("FAULT_PLAN", "").split(",") if x)

    def pipeline(case):
        return answer(case, plan.get(case.id))
    pipeline.concurrent = bool(os.environ.get("FAULT_CONCURRENT"))  # thread-safe: --genai-concurrency N may pool it
    return pipeline
'''

BASE_CONFIG: dict[str, Any] = {
    "version": 1,
    "seed": 7,
    "pipeline": "fault_pipeline:factory",
    "eval": {"set": "evals/qa.jsonl"},
    "gates": {"f1": ">= 0.5"},
    "tracking": {"enabled": False, "results_dir": "runs"},
    "env": {"lock_file": "none.lock"},
}

BIN = Path(sys.executable).parent


@dataclass
class Ran:
    ret: int
    out: str  # stdout and stderr together


class FaultProject:
    """A throwaway eval project in a pytester folder: the config as data (`config`), or as text (`config_text`)."""

    def __init__(self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pytester = pytester
        self.monkeypatch = monkeypatch
        self.root = pytester.path
        self.config: dict[str, Any] = json.loads(json.dumps(BASE_CONFIG))
        self.config_text: str | bytes | None = None  # the config file's text as it is, instead of `config`
        self.no_config = False  # --genai-config names a file that is not written
        self.cleanup = contextlib.ExitStack()  # what a row started (a stub server): closed after the row
        pytester.syspathinsert()
        (self.root / "fault_pipeline.py").write_text(PIPELINE)
        (self.root / "evals").mkdir()
        self.write_cases(CASES)
        for name in ("FAULT_PLAN", "FAULT_BUILD", "FAULT_CONCURRENT", "MLFLOW_TRACKING_URI"):
            monkeypatch.delenv(name, raising=False)

    # -- what a row injects ---------------------------------------------------------------------
    def set(self, dotted: str, value: Any) -> None:
        """A config key (dotted) set to `value`; None removes it."""
        node = self.config
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value

    def write_cases(self, cases: list[Any]) -> None:
        self.eval_set.write_text("".join(json.dumps(c) + "\n" for c in cases))

    @property
    def eval_set(self) -> Path:
        return self.root / "evals" / "qa.jsonl"

    def plan(self, **hows: str) -> None:
        """The pipeline misbehaves on these cases: plan(c3="raise")."""
        self.monkeypatch.setenv("FAULT_PLAN", ",".join(f"{k}:{v}" for k, v in hows.items()))

    def prompt(self, text: str, name: str = "qa.yaml") -> None:
        (self.root / "prompts").mkdir(exist_ok=True)
        (self.root / "prompts" / name).write_text(text)

    def stub(self, **behaviour: Any) -> str:
        """An OpenAI-compatible stub server (pytest_genai.testing) behaving so, for this row; its base URL."""
        from pytest_genai.testing.openai_stub import OpenAIStub, StubBehaviour

        return str(self.cleanup.enter_context(OpenAIStub(StubBehaviour(**behaviour))).base_url)

    def latest_run(self) -> str:
        """The name of the newest run folder (a row that runs a session before the one it checks)."""
        return self.run_dirs()[-1].name

    def write_config(self) -> Path:
        path = self.root / "genai.yaml"
        if self.no_config or path.is_symlink() or path.exists() and not path.is_file():
            return path  # a row made it something else on purpose
        text = self.config_text if self.config_text is not None else yaml.safe_dump(self.config, sort_keys=False)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    # -- running --------------------------------------------------------------------------------
    def pytest_inprocess(self, *args: str) -> Ran:
        """A session in this process. A row whose session imports MLflow runs in a subprocess: when pytester dropped
        the modules a session imported, MLflow's, dropped so, left importlib.metadata finding no distribution in this
        process (the pytest11 entry points of every later session lost). conftest now keeps installed libraries;
        the check stays, so a session that breaks this process's metadata is named, not felt three tests later."""
        self.write_config()
        result = self.pytester.runpytest_inprocess("--genai-config", "genai.yaml", "-p", "no:cacheprovider", *args)
        assert any(True for _ in importlib.metadata.entry_points(group="pytest11")), (
            "this in-process session imported MLflow (see pytest_inprocess): run the row with via='subproc'")
        return Ran(int(result.ret), result.stdout.str() + "\n" + result.stderr.str())

    def pytest_subprocess(self, *args: str, fsize_limit: int | None = None, timeout: float = 120) -> Ran:
        """`python -m pytest` in its own process group (a hung session is killed whole); `fsize_limit`: the largest
        file it may write (RLIMIT_FSIZE, SIGXFSZ ignored: a write past it fails with EFBIG, as on a full disk)."""
        self.write_config()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
        env.update(PYTHONPATH=str(self.root), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")

        def limit() -> None:
            if fsize_limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

        argv = [sys.executable, "-m", "pytest", "--genai-config", "genai.yaml", "-p", "no:cacheprovider", "-p",
                "no:randomly", *args]
        proc = subprocess.Popen(argv, cwd=self.root, env=env, text=True, errors="replace", stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=limit)
        try:
            out = proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            left = proc.communicate()[0][-3000:]
            raise AssertionError(f"the session hung: still running after {timeout} s\n{left}") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # nothing of it outlives the row (an abandoned case's child)
        return Ran(proc.returncode, out)

    def cli(self, *args: str) -> Ran:
        """`pytest-genai ARGS` in this process, in the project folder; an exception that escapes is its traceback."""
        self.write_config()
        from pytest_genai.cli import main

        self.monkeypatch.chdir(self.root)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                ret = main(list(args))
            except SystemExit as exc:  # argparse
                ret = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - what the user would see: a traceback
                import traceback

                err.write(traceback.format_exc())
                ret = 1
        return Ran(int(ret), out.getvalue() + "\n" + err.getvalue())

    # -- what a run left ------------------------------------------------------------------------
    def run_dirs(self) -> list[Path]:
        root = self.root / "runs"
        return sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
