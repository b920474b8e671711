"""Baselines: what a run is compared with (`Baseline`: a record with its per-case results, or why there is none),
whether it can be compared (`check_comparable`), and `previous` (the newest complete run of the same eval set in
this project's results folder). Resolving `--genai-baseline REF` (a run folder, an MLflow run id, a models:/
reference) is tracking's: `pytest_genai.tracking.runref.resolve_baseline`. A missing alias or registered model,
or no previous run, is not an error (the first run has nothing to compare with); anything else that cannot be
resolved is (BaselineError)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_genai.run_folder import RESULTS_FILE, RUN_FILE, is_run_folder
from pytest_genai.runlog import RunLogError, RunRecord, read_run

PREVIOUS = "previous"  # REF: the newest complete run of the same eval set under tracking.results_dir


class BaselineError(Exception):
    """The baseline cannot be resolved or used; the message says which and why (the caller names the flag/key)."""


@dataclass(frozen=True)
class Baseline:
    """A resolved baseline (record with results) or, with `record` None, why there is none (`note`)."""

    ref: str
    source: str  # run folder | mlflow run | registered model
    record: RunRecord | None = None
    run_id: str | None = None
    model_version: str | None = None  # NAME/VERSION
    note: str = ""

    @property
    def available(self) -> bool:
        return self.record is not None


def need_results(record: RunRecord, what: str) -> RunRecord:
    """The record, if it has per-case results (`what` names it in the error)."""
    if not record.results:
        raise BaselineError(f"{what} has no per-case results ({RESULTS_FILE}): a comparison pairs cases")
    return record


def previous_run(results_dir: Path, eval_set_hash: str) -> Baseline:
    """The newest run folder (by when its run.json was written) that is a complete eval of this eval set, with its
    results; none yet (the first run, a fresh CI checkout) is no baseline, and its gates are skipped."""
    candidates = []
    for folder in (results_dir.iterdir() if results_dir.is_dir() else ()):
        if is_run_folder(folder):
            candidates.append(((folder / RUN_FILE).stat().st_mtime_ns, folder.name, folder))
    for _, _, folder in sorted(candidates, reverse=True):
        try:
            record = read_run(folder, with_results=False)
        except RunLogError:
            continue  # a folder of another release, or damaged: not a baseline, not an error
        if record.status == "complete" and record.provenance.eval_set_hash == eval_set_hash:
            return Baseline(PREVIOUS, f"run folder {folder.name}", need_results(
                read_run(folder, with_results=True), f"the run folder {folder}"), record.tracking.run_id)
    return Baseline(PREVIOUS, "run folder", note=f"no earlier complete run of this eval set in {results_dir} "
                                                 "(the first run): nothing to compare with")


def check_comparable(baseline: RunRecord, eval_set_hash: str, case_ids: list[str], *, intersect: bool) -> str | None:
    """At session start: why this run cannot be compared with the baseline (another eval set, other cases), or
    None. With `intersect` only a baseline sharing no case id is refused."""
    base_ids = {r.id for r in baseline.results}
    shared = [i for i in case_ids if i in base_ids]
    theirs = baseline.provenance.eval_set_hash
    if intersect:
        return None if shared else f"the baseline shares no case id with this eval set (eval_set.hash {theirs})"
    if theirs and theirs != eval_set_hash:
        return (f"the baseline was measured on another eval set: its eval_set.hash is {theirs}, this run's is "
                f"{eval_set_hash}; compare on the shared case ids with --genai-baseline-intersect "
                "(or compare.intersect: true)")
    missing = [i for i in case_ids if i not in base_ids]
    if missing:
        shown = ", ".join(missing[:5]) + (f", … ({len(missing) - 5} more)" if len(missing) > 5 else "")
        return (f"the baseline has no result for {len(missing)} case(s) of this eval set ({shown}): it was a partial "
                "run; compare on the shared case ids with --genai-baseline-intersect")
    return None


def describe(b: Any) -> str:
    """One line naming a baseline: its ref and where it led."""
    bits = [b.source] if b.source else []
    if b.model_version:
        bits.append(f"version {b.model_version}")
    if b.run_id and b.run_id != b.ref:
        bits.append(f"run {b.run_id}")
    return f"{b.ref}" + (f" ({', '.join(bits)})" if bits else "")
