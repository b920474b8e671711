"""Baseline resolution: what `--genai-baseline REF` (or `compare.baseline`) names, as a run record with its
per-case results. REF is a local run folder, an MLflow run id, `models:/NAME@ALIAS` / `models:/NAME/VERSION`
(the eval run behind that model version, tag genai.eval_run_id), or `previous` (the newest complete run of the
same eval set in this project's results folder). A missing alias or registered model, or no previous run, is
not an error (the first run has nothing to compare with); anything else that cannot be resolved is
(BaselineError)."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_genai import names
from pytest_genai.runlog import RunLogError, RunRecord, read_run

PREVIOUS = "previous"  # REF: the newest complete run of the same eval set under tracking.results_dir
_MODEL_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[0-9]+))$")


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


def _where(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db (MLflow's default)"


def _missing_sqlite(uri: str | None) -> Path | None:
    """The file of a sqlite store that does not exist: asking MLflow would create and migrate an empty one."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///"):])
    return None if path.exists() else path.resolve()


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


def record_from_mlflow(run_id: str, uri: str | None, with_results: bool = False) -> tuple[RunRecord, str]:
    """The run record logged with an MLflow run (its run.json and results.jsonl artifacts) and "mlflow:<id>".
    Shared by `pytest-genai show` and baseline resolution; RunLogError when the store does not return the run."""
    from pytest_genai.tracking.mlflow_store import _bounded, _client, _quiet

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    missing = _missing_sqlite(uri)
    if missing is not None:
        raise RunLogError(f"{run_id!r} is not a run folder, and there is no MLflow store at {missing} to look it up "
                          "in: pass --tracking-uri, set MLFLOW_TRACKING_URI, or run from the folder of your mlflow.db")
    with _quiet(), _bounded(0, 30), tempfile.TemporaryDirectory(prefix="genai-run-") as tmp:
        client = _client(uri)
        try:
            client.get_run(run_id)
        except Exception as exc:
            raise RunLogError(f"{run_id!r} is not a run folder, and the MLflow store {_where(uri)} did not return it: "
                              f"{_first_line(exc)}") from None
        dest = Path(tmp)
        for name in ("run.json", "results.jsonl") if with_results else ("run.json",):
            try:
                client.download_artifacts(run_id, name, str(dest))
            except Exception:
                pass  # read_run names what is missing
        record = read_run(dest, with_results=with_results)
    if record.tracking.run_id is None:  # the logged run.json was written before the run id was known
        record = record.with_tracking(run_id=run_id)
    return record, f"mlflow:{run_id}"


def _need_results(record: RunRecord, what: str) -> RunRecord:
    if not record.results:
        raise BaselineError(f"{what} has no per-case results (results.jsonl): a comparison pairs cases")
    return record


def resolve_baseline(ref: str, uri: str | None, base_dir: Path, *, results_dir: Path | None = None,
                     eval_set_hash: str | None = None) -> Baseline:
    """Resolve REF (see the module doc); a relative run folder is relative to `base_dir`; `previous` looks in
    `results_dir` for a run of `eval_set_hash`."""
    ref = ref.strip()
    if ref == PREVIOUS:
        if results_dir is None or eval_set_hash is None:
            raise BaselineError("'previous' needs the results folder and the eval set of this run")
        return previous_run(results_dir, eval_set_hash)
    if ref.startswith("models:/"):
        return _from_registry(ref, uri)
    folder = Path(os.path.expanduser(ref))
    folder = folder if folder.is_absolute() else base_dir / folder
    if folder.is_dir():
        try:
            record = read_run(folder, with_results=True)
        except RunLogError as exc:
            raise BaselineError(str(exc)) from None
        return Baseline(ref, "run folder", _need_results(record, f"the run folder {folder}"), record.tracking.run_id)
    if "/" in ref or os.sep in ref or ref.startswith("."):
        raise BaselineError(f"{ref!r}: no such run folder ({folder})")
    return Baseline(ref, "mlflow run", _from_mlflow(ref, uri), ref)


def previous_run(results_dir: Path, eval_set_hash: str) -> Baseline:
    """The newest run folder (by when its run.json was written) that is a complete eval of this eval set, with its
    results; none yet (the first run, a fresh CI checkout) is no baseline, and its gates are skipped."""
    candidates = []
    for folder in (results_dir.iterdir() if results_dir.is_dir() else ()):
        run_json = folder / "run.json"
        if run_json.is_file():
            candidates.append((run_json.stat().st_mtime_ns, folder.name, folder))
    for _, _, folder in sorted(candidates, reverse=True):
        try:
            record = read_run(folder, with_results=False)
        except RunLogError:
            continue  # a folder of another release, or damaged: not a baseline, not an error
        if record.status == "complete" and record.provenance.eval_set_hash == eval_set_hash:
            return Baseline(PREVIOUS, f"run folder {folder.name}", _need_results(
                read_run(folder, with_results=True), f"the run folder {folder}"), record.tracking.run_id)
    return Baseline(PREVIOUS, "run folder", note=f"no earlier complete run of this eval set in {results_dir} "
                                                 "(the first run): nothing to compare with")


def _from_mlflow(run_id: str, uri: str | None) -> RunRecord:
    try:
        record, _ = record_from_mlflow(run_id, uri, with_results=True)
    except RunLogError as exc:
        raise BaselineError(str(exc)) from None
    return _need_results(record, f"the MLflow run {run_id}")


def _from_registry(ref: str, uri: str | None) -> Baseline:
    from pytest_genai.tracking.mlflow_store import _bounded, _client, _quiet

    m = _MODEL_REF.match(ref)
    if not m:
        raise BaselineError(f"{ref!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, version = m.group("name"), m.group("alias"), m.group("version")
    with _quiet(), _bounded(0, 30):
        from mlflow.exceptions import MlflowException

        client = _client(uri)
        try:
            if alias is not None:
                try:
                    mv = client.get_model_version_by_alias(name, alias)
                except MlflowException as exc:
                    if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
                        return _missing_alias(client, ref, name)
                    raise
            else:
                mv = client.get_model_version(name, version)
        except MlflowException as exc:
            raise BaselineError(f"{ref}: the MLflow store {_where(uri)} did not return it: {_first_line(exc)}") from None
        except Exception as exc:
            raise BaselineError(f"{ref}: the MLflow store {_where(uri)} cannot be reached: {_first_line(exc)}") from None
    run_id = (mv.tags or {}).get(names.TAG_EVAL_RUN_ID)
    label = f"{name}/{mv.version}"
    if not run_id:
        raise BaselineError(f"{ref} is version {mv.version}, which names no eval run (tag {names.TAG_EVAL_RUN_ID})")
    return Baseline(ref, "registered model", _from_mlflow(str(run_id), uri), str(run_id), str(label))


def _missing_alias(client: Any, ref: str, name: str) -> Baseline:
    """No such alias yet is the first run's normal state (baseline gates skipped); a model name that is a typo of an
    existing one is an error, or a misspelt reference would switch every baseline gate off in CI."""
    from pytest_genai.config.suggest import suggest_name

    known = [m.name for m in client.search_registered_models(max_results=1000)]
    if name in known:
        return Baseline(ref, "registered model", note=f"{ref} does not exist yet (model {name} has no such alias)")
    hint = suggest_name(name, known)
    if hint:
        raise BaselineError(f"{ref}: there is no registered model {name!r} — did you mean {hint!r}? "
                            f"(registered: {', '.join(sorted(known))})")
    return Baseline(ref, "registered model", note=f"{ref} does not exist yet (no registered model {name!r})")


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
