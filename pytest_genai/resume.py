"""`--genai-resume RUN`: finish an interrupted run. RUN is its run folder (a path, or a folder's name in the results
folder) or the MLflow run id it was logged as. The session runs only the cases the run did not finish, with the
same config, eval set, prompt and env (else a refusal naming what changed), appends them to the same run folder
(its journal) and writes the completed record there; the MLflow run it is logged as is tagged with the run it
resumed. For a deterministic pipeline the metrics equal those of an uninterrupted run (seeds are per case)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_genai import names
from pytest_genai.run_folder import is_run_folder, writer_alive
from pytest_genai.runlog import INTERRUPTED, RunLogError, RunRecord, read_run, write_record
from pytest_genai.tracking.local import new_run_dir
from pytest_genai.tracking.runref import EVERY_ARTIFACT, RUN_FOLDER, SESSION_URI_OPTION, looks_like_path, resolve
from pytest_genai.types import CaseResult

FLAG = "--genai-resume"


class ResumeError(Exception):
    """The run cannot be resumed; the message says why and what to do."""


@dataclass(frozen=True)
class Resumable:
    run_dir: Path
    record: RunRecord  # with the results it finished

    @property
    def finished(self) -> dict[str, CaseResult]:
        return {r.id: r for r in self.record.results}

    @property
    def mlflow_run_id(self) -> str | None:
        return self.record.tracking.run_id


def find(ref: str, *, results_dir: Path, base_dir: Path, uri: str | None, download: bool = True) -> Resumable:
    """The run folder REF names: a folder (path or name), else the local folder logged as that MLflow run, else the
    MLflow run's artifacts downloaded into a new folder of `results_dir` (`download` False: refused instead)."""
    ref = ref.strip()
    local = _local_folder(ref, results_dir, base_dir)
    if local is None:
        if looks_like_path(ref) or not download:
            raise ResumeError(f"{FLAG} {ref}: no such run folder (in {results_dir} or as a path)"
                              + ("" if looks_like_path(ref) else "; tracking is off, so no MLflow run id is looked up"))
        dest = new_run_dir(results_dir, "resumed")
        try:
            found = resolve(ref, uri=uri, with_results=True, download_to=dest, artifacts=EVERY_ARTIFACT,
                            uri_option=SESSION_URI_OPTION)
        except RunLogError as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise ResumeError(f"{FLAG} {ref}: {exc}") from None
        local = found.folder if found.source != RUN_FOLDER else local
        if local is None:
            raise ResumeError(f"{FLAG} {ref}: the MLflow run's record could not be kept in {results_dir}")
        write_record(local, read_run(local, with_results=False).with_tracking(run_id=ref))  # found by its id next time
    try:
        record = read_run(local, with_results=True)
    except RunLogError as exc:
        raise ResumeError(f"{FLAG} {ref}: {exc}") from None
    if writer_alive(local):
        raise ResumeError(f"{FLAG} {ref}: {local} is still running (its session holds {local}/.lock); wait for it "
                          "or stop it first")
    if record.status != INTERRUPTED:
        raise ResumeError(f"{FLAG} {ref}: {local} is a {record.status} run, not an interrupted one: there is nothing "
                          "to resume (run the eval again instead)")
    return Resumable(local, record)


def _local_folder(ref: str, results_dir: Path, base_dir: Path) -> Path | None:
    for candidate in (Path(ref).expanduser(), base_dir / ref, results_dir / ref):
        if candidate.is_dir() and is_run_folder(candidate):
            return candidate.resolve()
    if looks_like_path(ref) or not results_dir.is_dir():
        return None
    for folder in results_dir.iterdir():  # the folder an MLflow run id was logged from
        if is_run_folder(folder):
            try:
                if read_run(folder, with_results=False).tracking.run_id == ref:
                    return folder.resolve()
            except RunLogError:
                continue
    return None


def check_same(run: Resumable, *, config_hash: str, eval_set_hash: str, prompt_hash: str | None,
               env_lock_hash: str | None, config_path: Any = None, repeat: tuple[int, str | None] | None = None) -> None:
    """The inputs that decide a case's result must be those the interrupted run had: else a refusal naming them
    (`repeat`: the session's repeats and, when sampled, its eval.pass_policy)."""
    p, x = run.record.provenance, run.record.execution
    changed = [f"{what}: {short(was)} then, {short(now)} now" for what, was, now in (
        ("config_hash", p.config_hash, config_hash), ("eval_set.hash", p.eval_set_hash, eval_set_hash),
        ("prompt.hash", p.prompt_hash, prompt_hash), ("env.lock_hash", p.env_lock_hash, env_lock_hash)) if was != now]
    if repeat is not None and (x.repeat, x.pass_policy) != repeat:
        changed.append(f"--genai-repeat: {x.repeat} then, {repeat[0]} now" if x.repeat != repeat[0]
                       else f"eval.pass_policy: {x.pass_policy or 'none'} then, {repeat[1] or 'none'} now")
    if changed:
        raise ResumeError(f"{FLAG}: {run.run_dir.name} was run with other inputs, so its finished cases cannot be "
                          f"completed by this session ({'; '.join(changed)}). Resume it with the config, eval set, "
                          "prompt and env it ran with, or run the eval afresh")


def short(value: str | None) -> str:
    return "none" if not value else value[:12]


def resumed_tags(run: Resumable) -> dict[str, str]:
    """The completed run's tags that say what it resumed."""
    return {names.TAG_RESUMED_FROM: run.mlflow_run_id or run.run_dir.name,
            names.TAG_RESUMED_CASES: str(len(run.record.results))}
