"""What a row of the catalogue is (`Fault`, with its expected outcome `Clear` or `Survives`) and the helpers rows
are written with: each returns an `inject(project)` for the project of project.py."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from faults.project import CASES, IDS, FaultProject

RUN = "{run}"  # in a row's args: the name of the newest run folder (made by its inject)


@dataclass(frozen=True)
class Clear:
    """A clear error: exit status `ret` (None: any non-zero), every string of `names` in the output, none of `hides`
    (secrets), no run folder left behind unless `run_folder`. `user_trace`: the error is the user's own code's (their
    factory raised), so its traceback may follow the one-line message, as long as it ends in their file."""

    names: tuple[str, ...]
    ret: int | None = 4  # pytest's usage error; the `pytest-genai` command says 2
    hides: tuple[str, ...] = ()
    run_folder: bool = False
    user_trace: str | None = None  # the user's own code raised: a traceback may be shown if it ends in this file


@dataclass(frozen=True)
class Survives:
    """The session went on or died, and every case that finished is on disk: `finished` the case ids in the run
    folder's results.jsonl (answered right unless in `errors`), `errors` case id -> a substring of its recorded error,
    `status` the record's status as `pytest-genai show` reads it (runlog.read_run); `ret` the exit status (None: any
    non-zero); `hides` strings found neither in the output nor in any file of the run folder."""

    finished: tuple[str, ...]
    status: str = "complete"
    errors: Mapping[str, str] = field(default_factory=dict)
    ret: int | None = 1
    hides: tuple[str, ...] = ()
    answers: Mapping[str, str] = field(default_factory=dict)  # case id -> its recorded answer, when not the right one
    names: tuple[str, ...] = ()  # strings the output must hold (what the user is told)
    at_least: bool = False  # `finished` must be on disk; others may be too (what a full disk lets through varies)


@dataclass(frozen=True)
class Fault:
    id: str
    what: str
    inject: Callable[[FaultProject], Any]
    expect: Clear | Survives
    via: str = "inproc"
    args: tuple[str, ...] = ()
    slow: bool = False
    xfail: str | None = None
    timeout: float = 120  # a session in its own process still running after this long has hung


def cfg(**keys: Any) -> Callable[[FaultProject], None]:
    """Config keys set (dotted, `__` for `.`): cfg(llm__temp=0.2)."""
    def inject(p: FaultProject) -> None:
        for k, v in keys.items():
            p.set(k.replace("__", "."), v)
    return inject


def cfg_text(text: str | bytes) -> Callable[[FaultProject], None]:
    def inject(p: FaultProject) -> None:
        p.config_text = text
    return inject


def plan(**hows: str) -> Callable[[FaultProject], None]:
    def inject(p: FaultProject) -> None:
        p.plan(**hows)
    return inject


def eval_lines(*lines: str | bytes) -> Callable[[FaultProject], None]:
    """The eval set written as these raw lines (str or bytes)."""
    def inject(p: FaultProject) -> None:
        data = b"".join((ln.encode() if isinstance(ln, str) else ln) + b"\n" for ln in lines)
        p.eval_set.write_bytes(data)
    return inject


def case(i: int, **changes: Any) -> str:
    """Case c<i> as a JSON line, with `changes` (None removes a field)."""
    obj = dict(CASES[i - 1])
    for k, v in changes.items():
        if v is None:
            obj.pop(k, None)
        else:
            obj[k] = v
    return json.dumps(obj)


def with_prompt(text: str, version: int = 1) -> Callable[[FaultProject], None]:
    """A prompt qa@`version` in the config; prompts/qa.yaml holds `text`."""
    def inject(p: FaultProject) -> None:
        p.set("prompt", {"id": "qa", "version": version})
        p.prompt(text)
    return inject


def both(*injects: Callable[[FaultProject], Any]) -> Callable[[FaultProject], None]:
    def inject(p: FaultProject) -> None:
        for f in injects:
            f(p)
    return inject


def env(**values: str) -> Callable[[FaultProject], None]:
    def inject(p: FaultProject) -> None:
        for k, v in values.items():
            p.monkeypatch.setenv(k, v)
    return inject


def build(how: str) -> Callable[[FaultProject], None]:
    return env(FAULT_BUILD=how)


def symlink_loop(rel: str) -> Callable[[FaultProject], None]:
    """`rel` (inside the project) a symlink to itself."""
    def inject(p: FaultProject) -> None:
        path = p.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        os.symlink(path.name, path)
    return inject


def file_at(rel: str, data: bytes = b"not a folder\n") -> Callable[[FaultProject], None]:
    def inject(p: FaultProject) -> None:
        (p.root / rel).write_bytes(data)
    return inject


def llm_stub(prompt: str | None = None, base_url: str | None = None, key: str = "sk-faults-abcdefghij0123456789",
             llm: Mapping[str, Any] | None = None, **behaviour: Any) -> Callable[[FaultProject], None]:
    """builtin:llm on the OpenAI-compatible stub behaving so (or on `base_url`), the key from $FAULTS_API_KEY,
    prompts/qa.yaml holding `prompt` (default: a Context:/Q: prompt the stub answers from the context)."""
    def inject(p: FaultProject) -> None:
        url = base_url or p.stub(**behaviour)
        with_prompt(prompt or GOOD_PROMPT)(p)
        p.set("pipeline", "builtin:llm")
        p.set("llm", {"provider": "openai_compatible", "base_url": url, "api_key": "${FAULTS_API_KEY}",
                      "model_id": "stub-model", "max_tokens": 16, "max_retries": 2, "backoff_base_s": 0.01,
                      "backoff_max_s": 0.05, "timeout_s": 5, **(llm or {})})
        p.monkeypatch.setenv("FAULTS_API_KEY", key)
    return inject


def died_at(case_id: str, how: str = "exit") -> Callable[[FaultProject], None]:
    """A session run first, in its own process, dying at `case_id`: an interrupted run folder (then no plan)."""
    def inject(p: FaultProject) -> None:
        p.plan(**{case_id: how})
        first = p.pytest_subprocess()
        assert first.ret not in (0, 1) and len(p.run_dirs()) == 1, first.out[-2000:]
        p.plan()
    return inject


def ran_first(*args: str) -> Callable[[FaultProject], None]:
    """A session run first, in this process (a complete run folder)."""
    def inject(p: FaultProject) -> None:
        first = p.pytest_inprocess(*args)
        assert first.ret == 0 and len(p.run_dirs()) == 1, first.out[-2000:]
    return inject


def backtracking_regex(p: FaultProject) -> None:
    """Three cases; c2's answer 'aaa...ab' (the context's first word) against expect.regex '^(a+)+$': 2**40 steps."""
    eval_lines(case(1), case(2, context="a" * 40 + "b is the answer.", expect={"regex": "^(a+)+$"}), case(3))(p)


def torn_line(p: FaultProject) -> None:
    """The newest run folder's results.jsonl ends in half a line (a write cut short by a crash or a full disk)."""
    with (p.run_dirs()[-1] / "results.jsonl").open("a") as fh:
        fh.write('{"id": "c9", "question": "What is ans')


ALL = IDS
GOOD_PROMPT = "id: qa\nversion: 1\ntemplate: 'Context: {{ context }} Q: {{ question }}'\n"
