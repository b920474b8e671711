"""The last check before a model version is created: the packaged model, saved to a folder, is loaded in a fresh
Python process whose working directory is an empty temporary folder (not the project) and asked one question.
A pipeline that reads a file relative to the project, imports a module that does not travel with the model or
cannot build outside the eval's process fails here, not in the first deployment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

TIMEOUT_S = 900.0  # loading a local model on a loaded 2-core machine takes tens of seconds; a hang is caught
MARK = "GENAI-PROBE "

_SCRIPT = r"""
import json, sys, traceback
def report(data):
    sys.stdout.write("\nGENAI-PROBE " + json.dumps(data) + "\n")
    sys.stdout.flush()
try:
    import mlflow.pyfunc
    model = mlflow.pyfunc.load_model(sys.argv[1])
    rows = json.load(sys.stdin)
    out = model.predict(rows)
    if hasattr(out, "to_dict"):
        out = out.to_dict(orient="records")
    row = list(out)[0] if out is not None and len(out) else None
    report({"row": row if isinstance(row, dict) else {"answer": row}})
except BaseException as exc:
    report({"error": traceback.format_exception_only(type(exc), exc)[-1].strip()})
"""


def ask_in_fresh_process(model_dir: Path, row: Mapping[str, Any], *, project_dirs: Sequence[Path],
                         timeout: float = TIMEOUT_S) -> str | None:
    """None if the saved model answered `row`; else why not (one line, not sanitized: the caller's boundary).
    PYTHONPATH entries inside `project_dirs` are dropped: the model must not find the project's code that way."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and not _inside(Path(p), project_dirs))
    env.update({"GENAI_MONITOR_SINK": "off", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
                "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONDONTWRITEBYTECODE": "1"})
    with tempfile.TemporaryDirectory(prefix="genai-probe-") as cwd:
        try:  # the question on stdin: not on a command line that `ps` shows
            done = subprocess.run([sys.executable, "-c", _SCRIPT, str(model_dir)], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=timeout, input=json.dumps([dict(row)]))
        except subprocess.TimeoutExpired:
            return f"it did not answer within {timeout:.0f} s"
    found = [ln[len(MARK):] for ln in done.stdout.splitlines() if ln.startswith(MARK)]
    if not found:
        tail = [ln for ln in done.stderr.splitlines() if ln.strip()]
        return f"the process exited with status {done.returncode}" + (f": {tail[-1].strip()}" if tail else "")
    result = json.loads(found[-1])
    if result.get("error"):
        return str(result["error"])
    answered = result.get("row") or {}
    if answered.get("error"):
        return f"it answered with an error: {answered['error']}"
    if answered.get("answer") is None:
        return "it gave no answer"
    return None


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    try:
        resolved = path.resolve()
    except OSError:
        return False
    return any(resolved == f.resolve() or f.resolve() in resolved.parents for f in folders)
