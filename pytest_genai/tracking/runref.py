"""Open a run by reference: the one resolver behind every command and option that names a stored run
(`show`, `report`, `reproduce`, `--genai-baseline`/`compare.baseline`, `promote --reeval`, `monitor`).

A reference is one of
- a run folder: a path (relative to `base_dir`, else the current folder; `~` expanded), or the name of a folder
  in `results_dir` (`20260101-120000-abcdef12`);
- an MLflow run id, or `runs:/<run id>`: the run's logged run folder (its artifacts);
- `models:/NAME@ALIAS` or `models:/NAME/VERSION`: the eval run behind that registered model version (its tag
  genai.eval_run_id).
The answer is a `ResolvedRun`: the record, the local folder it was read from or downloaded to, the MLflow run id
if any. What cannot be resolved is a `RunRefError` naming the reference (a `RunLogError`: every command already
reports those); an alias that does not exist yet is the `NoSuchAlias` kind of it (a baseline's first run)."""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Collection, Iterator

from pytest_genai import names
from pytest_genai.compare.baseline import PREVIOUS, Baseline, BaselineError, need_results, previous_run
from pytest_genai.config.suggest import suggest_name
from pytest_genai.run_folder import RECORD_FILES, RUN_FILE
from pytest_genai.runlog import INTERRUPTED, RunLogError, RunRecord, read_run
from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking.mlflow_client import bounded, error_line, quiet, store_name
from pytest_genai.tracking.owner import UNKNOWN, settle

FORMS = ("a run folder (a path, or a folder's name in the results folder), an MLflow run id, runs:/<run id>, "
         "models:/NAME@ALIAS or models:/NAME/VERSION")
MODEL_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[0-9]+))$")
RUN_REF = re.compile(r"^runs:/(?P<run_id>[^/]+)/?$")
SESSION_URI_OPTION = "--genai-tracking-uri (or tracking.uri)"  # how a pytest session names the store (`uri_option`)
EVERY_ARTIFACT = None  # `artifacts=EVERY_ARTIFACT`: download all of an MLflow run's top-level artifacts

RUN_FOLDER, MLFLOW_RUN, REGISTERED_MODEL = "run folder", "mlflow run", "registered model"  # ResolvedRun.source
MISSING_ALIAS_CODES = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


class RunRefError(RunLogError):
    """A run reference that cannot be resolved; the message names the reference and why."""


class NoSuchAlias(RunRefError):
    """`models:/NAME@ALIAS` whose alias (or model) does not exist yet: for a baseline, the first run's normal
    state (no baseline, its gates skipped); for anything else, an error. `note` says which is missing."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


@dataclass(frozen=True)
class ResolvedRun:
    ref: str  # as given
    record: RunRecord  # with its per-case results when asked for
    folder: Path | None  # the run folder read, or where the MLflow run's artifacts went (None: a temporary folder)
    run_id: str | None  # the MLflow run, when known (a run folder's: the run it was logged as)
    source: str  # RUN_FOLDER | MLFLOW_RUN | REGISTERED_MODEL
    model_version: str | None = None  # NAME/VERSION, from models:/

    @property
    def where(self) -> str:
        """How a command names it: the folder as given, or mlflow:<run id>."""
        return str(self.folder) if self.source == RUN_FOLDER else f"mlflow:{self.run_id}"


def looks_like_path(ref: str) -> bool:
    """A folder path rather than an MLflow run id (which has no slash and does not start with a dot or ~)."""
    return "/" in ref or os.sep in ref or ref.startswith((".", "~"))


def resolve(ref: str, *, uri: str | None, results_dir: Path | None = None, base_dir: Path | None = None,
            with_results: bool = True, download_to: Path | None = None,
            artifacts: Collection[str] | None = (), skip: Collection[str] = (), client: Any = None,
            uri_option: str = "--tracking-uri") -> ResolvedRun:
    """The run REF names (see the module doc). An MLflow run's record is downloaded into `download_to` (else a
    temporary folder, gone on return), with the `artifacts` it has of those named (`EVERY_ARTIFACT`: all of its
    top-level artifacts but `skip`); `client`: an open client of `uri` to reuse; `uri_option`: what the user passes
    to name the store (the command's flag; a pytest session's is --genai-tracking-uri), said when there is none."""
    ref = ref.strip()
    if not ref:
        raise RunRefError(f"no run given: name {FORMS}")
    fetch = dict(with_results=with_results, download_to=download_to, artifacts=artifacts, skip=skip,
                 uri_option=uri_option)
    if ref.startswith("models:/"):
        return _from_model(ref, uri, client, **fetch)
    if ref.startswith("runs:/"):
        m = RUN_REF.match(ref)
        if not m:
            raise RunRefError(f"{ref!r} is not runs:/<run id> (a run is named by {FORMS})")
        return _from_run(ref, m.group("run_id"), f"{ref}:", uri, client, **fetch)
    folder = Path(os.path.expanduser(ref))
    folder = base_dir / folder if base_dir is not None and not folder.is_absolute() else folder
    if not folder.is_dir() and results_dir is not None and not looks_like_path(ref) and (results_dir / ref).is_dir():
        folder = results_dir / ref
    if folder.is_dir():
        record = read_run(folder, with_results=with_results)
        return ResolvedRun(ref, record, folder, record.tracking.run_id, RUN_FOLDER)
    if looks_like_path(ref):
        raise RunRefError(f"{ref!r}: no such run folder ({folder}); a run is named by {FORMS}")
    return _from_run(ref, ref, f"{ref!r} is not a run folder, and", uri, client, **fetch)


@contextmanager
def opened(ref: str, **kwargs: Any) -> Iterator[ResolvedRun]:
    """`resolve`, an MLflow run's artifacts in a temporary folder for the block (its `folder` is set either way)."""
    with tempfile.TemporaryDirectory(prefix="genai-run-") as tmp:
        yield resolve(ref, download_to=Path(tmp), **kwargs)


def _from_run(ref: str, run_id: str, lead: str, uri: str | None, client: Any, *, with_results: bool,
              download_to: Path | None, artifacts: Collection[str] | None, skip: Collection[str],
              uri_option: str = "--tracking-uri") -> ResolvedRun:
    """The logged run folder of MLflow run `run_id` (named by `ref`); `lead` starts the message when the store has
    no such run (it names the reference)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    missing = mlflow_client.missing_sqlite(uri) if client is None else None
    if missing is not None:
        raise RunRefError(f"{lead} there is no MLflow store at {missing} to look it up in: pass {uri_option}, set "
                          "MLFLOW_TRACKING_URI, or run from the folder of your mlflow.db")
    if download_to is not None:
        download_to.mkdir(parents=True, exist_ok=True)
    place = nullcontext(str(download_to)) if download_to is not None else tempfile.TemporaryDirectory(prefix="genai-run-")
    with quiet(), bounded(0, 30), place as tmp:
        store = client if client is not None else mlflow_client.client(uri)
        try:
            run = store.get_run(run_id)
        except Exception as exc:
            raise RunRefError(f"{lead} the MLflow store {store_name(uri)} did not return it: {error_line(exc)}") from None
        left = settle(store, [run]).get(run_id)  # RUNNING: being logged, or left so by a process now gone
        cut_short = (left is not None and left.marked) or run.info.status == "KILLED" \
            or run.data.tags.get(names.TAG_STATUS) == INTERRUPTED
        dest = Path(tmp)
        wanted = RECORD_FILES if with_results else (RUN_FILE,)
        for name in wanted:
            try:
                store.download_artifacts(run_id, name, str(dest))
            except Exception:
                pass  # read_run names what is missing
        if not (dest / RUN_FILE).is_file():
            if left is not None and not left.marked and left.state != UNKNOWN:  # being logged, elsewhere, ...
                why = left.line()
            elif cut_short:
                why = (f"it is {INTERRUPTED}: its logging was cut short (MLflow status KILLED); the run folder of the "
                       "session that made it has the whole record: `pytest-genai upload FOLDER` logs it")
            else:
                why = "it was not logged by pytest-genai, or its logging did not finish"
            raise RunRefError(f"{ref}: MLflow run {run_id} has no {RUN_FILE} artifact ({why})")
        record = read_run(dest, with_results=with_results)
        if cut_short and record.status != INTERRUPTED:  # its logging was cut short: not a whole run in the store
            record = replace(record, status=INTERRUPTED)
        _download(store, run_id, dest, uri, artifacts, set(skip) | set(wanted))
    if record.tracking.run_id is None:  # the logged run.json was written before the run id was known
        record = record.with_tracking(run_id=run_id)
    return ResolvedRun(ref, record, download_to, run_id, MLFLOW_RUN)


def _download(store: Any, run_id: str, dest: Path, uri: str | None, artifacts: Collection[str] | None,
              skip: Collection[str]) -> None:
    """Named artifacts when the run has them; every top-level artifact but `skip` (failing: an error)."""
    if artifacts is EVERY_ARTIFACT:
        try:
            for item in store.list_artifacts(run_id):
                if item.path not in skip:
                    store.download_artifacts(run_id, item.path, str(dest))
        except Exception as exc:
            raise RunRefError(f"MLflow run {run_id}: its artifacts could not be downloaded from {store_name(uri)}: "
                              f"{error_line(exc)}") from None
        return
    for name in artifacts:
        try:
            store.download_artifacts(run_id, name, str(dest))
        except Exception:
            pass  # not there (a run compared with no baseline has no comparison.json)


def _from_model(ref: str, uri: str | None, client: Any, **fetch: Any) -> ResolvedRun:
    m = MODEL_REF.match(ref)
    if not m:
        raise RunRefError(f"{ref!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, version = m.group("name"), m.group("alias"), m.group("version")
    with quiet(), bounded(0, 30):
        from mlflow.exceptions import MlflowException

        store = client if client is not None else mlflow_client.client(uri)
        try:
            if alias is not None:
                try:
                    mv = store.get_model_version_by_alias(name, alias)
                except MlflowException as exc:
                    if exc.error_code in MISSING_ALIAS_CODES:
                        raise _missing_alias(store, ref, name) from None
                    raise
            else:
                mv = store.get_model_version(name, version)
        except RunRefError:
            raise
        except MlflowException as exc:
            raise RunRefError(f"{ref}: the MLflow store {store_name(uri)} did not return it: {error_line(exc)}") from None
        except Exception as exc:
            raise RunRefError(f"{ref}: the MLflow store {store_name(uri)} cannot be reached: {error_line(exc)}") from None
    run_id = (mv.tags or {}).get(names.TAG_EVAL_RUN_ID)
    if not run_id:
        raise RunRefError(f"{ref} is version {mv.version}, which names no eval run (tag {names.TAG_EVAL_RUN_ID})")
    found = _from_run(ref, str(run_id), f"{ref} is eval run {run_id}, and", uri, client, **fetch)
    return replace(found, source=REGISTERED_MODEL, model_version=f"{name}/{mv.version}")


def _missing_alias(store: Any, ref: str, name: str) -> RunRefError:
    """No such alias yet is the first run's normal state; a model name that is a typo of an existing one is an
    error, or a misspelt reference would switch every baseline gate off in CI."""
    known = [m.name for m in store.search_registered_models(max_results=1000)]
    if name in known:
        return NoSuchAlias(f"{ref} does not exist yet (model {name} has no such alias)")
    hint = suggest_name(name, known)
    if hint:
        return RunRefError(f"{ref}: there is no registered model {name!r} — did you mean {hint!r}? "
                           f"(registered: {', '.join(sorted(known))})")
    return NoSuchAlias(f"{ref} does not exist yet (no registered model {name!r})")


# --------------------------------------------------------------------------- baselines

def resolve_baseline(ref: str, uri: str | None, base_dir: Path, *, results_dir: Path | None = None,
                     eval_set_hash: str | None = None, uri_option: str = "--tracking-uri") -> Baseline:
    """--genai-baseline REF (or compare.baseline) as a Baseline with per-case results: any reference `resolve`
    takes (a relative folder is relative to `base_dir`, the config's folder), or `previous` (the newest complete
    run of `eval_set_hash` in `results_dir`). An alias that does not exist yet, or no previous run, is no baseline
    (a note); anything else unresolved is a BaselineError."""
    ref = ref.strip()
    if ref == PREVIOUS:
        if results_dir is None or eval_set_hash is None:
            raise BaselineError("'previous' needs the results folder and the eval set of this run")
        return previous_run(results_dir, eval_set_hash)
    try:
        found = resolve(ref, uri=uri, base_dir=base_dir, results_dir=results_dir, with_results=True,
                        uri_option=uri_option)
    except NoSuchAlias as exc:
        return Baseline(ref, REGISTERED_MODEL, note=exc.note)
    except RunLogError as exc:
        raise BaselineError(str(exc)) from None
    what = f"the run folder {found.folder}" if found.source == RUN_FOLDER else f"the MLflow run {found.run_id}"
    return Baseline(ref, found.source, need_results(found.record, what), found.run_id, found.model_version)
