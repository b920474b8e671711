"""The run to reproduce: a local run folder, or an MLflow run whose artifacts (the same folder, logged) are
downloaded. Either way a folder holding the record and the artifacts a re-run is built from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pytest_genai.runlog import RESULTS_FILE, RUN_FILE, RunLogError, RunRecord, read_run

CONFIG_FILE = "config.resolved.yaml"
# The files a session writes at the top of a run folder; anything else there in a `record` run is its cassette.
KNOWN_FILES = {RUN_FILE, RESULTS_FILE, CONFIG_FILE, "renders.jsonl", "gates.json", "comparison.json", "report.html"}
NOT_DOWNLOADED = {RUN_FILE, RESULTS_FILE, "report.html", "comparison.json"}  # the record is read apart; reports unused


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
            if path.is_file() and path.name not in KNOWN_FILES and not path.name.endswith(".tmp") and _is_cassette(path):
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
    return "/" in ref or os.sep in ref or ref.startswith(".") or ref.startswith("~")


def open_run(ref: str, uri: str | None, download_to: Path) -> RunSource:
    """REF is a run folder or an MLflow run id (its artifacts go into `download_to`)."""
    folder = Path(os.path.expanduser(ref))
    if folder.is_dir():
        try:
            record = read_run(folder, with_results=True)
        except RunLogError as exc:
            raise ReproduceError(str(exc)) from None
        where = f"run folder {folder}" + (f" (MLflow run {record.tracking.run_id})" if record.tracking.run_id else "")
        return _checked(RunSource(record, folder, where))
    if is_run_folder_ref(ref):
        raise ReproduceError(f"{ref!r}: no such run folder")
    return _checked(from_mlflow(ref, uri, download_to))


def from_mlflow(run_id: str, uri: str | None, dest: Path) -> RunSource:
    """The record as `pytest-genai show` reads it (compare.baseline.record_from_mlflow), then the other artifacts."""
    from pytest_genai.compare.baseline import _first_line, _where, record_from_mlflow
    from pytest_genai.tracking.mlflow_store import _bounded, _client, _quiet

    try:
        record, _ = record_from_mlflow(run_id, uri, with_results=True)
    except RunLogError as exc:
        raise ReproduceError(str(exc)) from None
    dest.mkdir(parents=True, exist_ok=True)
    with _quiet(), _bounded(0, 30):
        client = _client(uri)
        try:
            for item in client.list_artifacts(run_id):
                if item.path not in NOT_DOWNLOADED:
                    client.download_artifacts(run_id, item.path, str(dest))
        except Exception as exc:
            raise ReproduceError(f"MLflow run {run_id}: its artifacts could not be downloaded from {_where(uri)}: "
                                 f"{_first_line(exc)}") from None
    return RunSource(record, dest, f"MLflow run {run_id} ({_where(uri)})")


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
