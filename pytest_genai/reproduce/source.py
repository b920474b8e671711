"""The run to reproduce: a local run folder, or an MLflow run whose artifacts (the same folder, logged) are
downloaded (tracking.runref resolves the reference). Either way a folder holding the record and the artifacts a
re-run is built from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pytest_genai.run_folder import CONFIG_FILE, REPORT_FILES, RESULTS_FILE, TMP_SUFFIX, TOP_FILES
from pytest_genai.runlog import RunLogError, RunRecord
from pytest_genai.tracking import runref
from pytest_genai.tracking.mlflow_client import store_name


class ReproduceError(Exception):
    """The run cannot be reproduced as asked; the message names the run, file or flag and what to do."""


@dataclass(frozen=True)
class RunSource:
    record: RunRecord  # with its per-case results
    folder: Path  # the run folder, or the downloaded artifacts of the MLflow run
    where: str  # how the run is named in the report

    def artifact(self, *parts: str) -> Path | None:
        path = self.folder.joinpath(*parts)
        return path if path.is_file() else None

    @property
    def cassette(self) -> Path | None:
        """The cassette a `--genai-cache record --genai-cassette` run copied into its folder, if any."""
        if self.record.execution.cache_mode != "record":
            return None
        for path in sorted(self.folder.iterdir()):
            if path.is_file() and path.name not in TOP_FILES and not path.name.endswith(TMP_SUFFIX) and _is_cassette(path):
                return path
        return None


def _is_cassette(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            first = fh.readline()
        data = json.loads(first)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and {"key", "generation", "request"} <= set(data)


def is_run_folder_ref(ref: str) -> bool:
    """A folder path rather than an MLflow run id (which has no slash and does not start with a dot)."""
    return runref.looks_like_path(ref)


def open_run(ref: str, uri: str | None, download_to: Path) -> RunSource:
    """REF is any run reference (tracking.runref: a run folder, an MLflow run id, runs:/, models:/); an MLflow
    run's artifacts (its logged run folder, but the reports) go into `download_to`."""
    try:
        found = runref.resolve(ref, uri=uri, with_results=True, download_to=download_to,
                               artifacts=runref.EVERY_ARTIFACT, skip=REPORT_FILES)
    except RunLogError as exc:
        raise ReproduceError(str(exc)) from None
    assert found.folder is not None
    record = found.record
    if found.source == runref.RUN_FOLDER:
        where = f"run folder {found.folder}" + (f" (MLflow run {found.run_id})" if found.run_id else "")
    else:
        where = f"MLflow run {found.run_id} ({store_name(uri)})"
        if found.model_version:
            where = f"{found.ref} ({found.model_version}, {where})"
    return _checked(RunSource(record, found.folder, where))


def _checked(source: RunSource) -> RunSource:
    """What a re-run needs from the run: its resolved config, a schema-2 record and per-case results."""
    r = source.record
    if r.schema_version < 2:
        raise ReproduceError(f"{source.where} was written by pytest-genai 0.1 (summary.json): it holds no resolved "
                             "config to re-run; run the eval again with this release")
    if source.artifact(CONFIG_FILE) is None:
        raise ReproduceError(f"{source.where} has no {CONFIG_FILE} (the resolved config every run folder gets): "
                             "nothing to re-run from; is it a complete run folder (see `pytest-genai show`)?")
    if not r.results:
        raise ReproduceError(f"{source.where} has no per-case results ({RESULTS_FILE}): there is nothing to compare a "
                             "re-run with")
    return source
