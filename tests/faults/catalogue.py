"""The catalogue: one row per bad input or fault, with the outcome it must have (rows in bad_inputs.py and
bad_runs.py, what a row is in spec.py).

A row is `Fault(id, what, inject, expect, ...)`:
* `inject(project)` changes the project of project.py (its config, eval set, prompt files, the pipeline's plan, the
  environment), or runs a first session (a run folder to resume);
* `via`: how the row runs: "inproc" (a pytest session in this process, pytester), "subproc" (`python -m pytest` in
  its own process: signals, crashes, hangs, MLflow), "subproc-fsize" (the same with a file-size limit: a full disk)
  or "cli" (the `pytest-genai` command); `args` its arguments (`{run}`: the newest run folder's name);
* `expect`: `Clear` (a clear error: a non-zero exit, no traceback, no INTERNALERROR, the message naming the file, key
  or value) or `Survives` (every finished case on disk in the run folder's results.jsonl, the record's status right).
Rows that need real signals, a crash or a wait are `slow`; `xfail` holds the reason for a row the product fails
today (strict: the row fails when the product is fixed, so the mark is removed with the fix)."""

from __future__ import annotations

from faults.bad_inputs import COMMANDS, CONFIG, ENVIRONMENT, EVAL_SET, GATES, PROMPTS
from faults.bad_runs import ANSWERS, BUILD, DEATHS, PROVIDER
from faults.spec import RUN, Clear, Fault, Survives

__all__ = ["CATALOGUE", "RUN", "Clear", "Fault", "Survives"]

CATALOGUE: list[Fault] = (CONFIG + GATES + EVAL_SET + PROMPTS + ENVIRONMENT + BUILD + PROVIDER + ANSWERS + DEATHS
                          + COMMANDS)
