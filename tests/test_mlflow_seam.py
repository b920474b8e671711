"""The one MLflow seam (tracking/mlflow_client.py), the one run-reference resolver (tracking/runref.py) and the
MLflow run carrying the session's own start and end (not the upload's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Project

from pytest_genai.compare.baseline import BaselineError
from pytest_genai.run_folder import COMPARISON_FILE, RESULTS_FILE, RUN_FILE
from pytest_genai.runlog import Provenance, RunLogError, RunRecord, write_run
from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking.mlflow_store import epoch_ms, log_run_dir
from pytest_genai.tracking.runref import (FORMS, MLFLOW_RUN, REGISTERED_MODEL, RUN_FOLDER, NoSuchAlias, RunRefError,
                                          opened, resolve, resolve_baseline)
from pytest_genai.types import CaseResult

STARTED, ENDED = "2026-01-02T03:04:05Z", "2026-01-02T03:04:38Z"  # a 33 s session
MODEL = "seam-model"

SLOW = '''
import time
from pytest_genai import Answer

def factory(config):
    def pipeline(case):
        time.sleep(0.4)
        return Answer(text=(case.context or "").split()[0])
    return pipeline
'''


# ----------------------------------------------------------------------------------------- the session's times

def test_the_mlflow_run_starts_and_ends_when_the_session_did(project: Project) -> None:
    """A real session (through the warm tracking worker where the machine has one, which then gets the caller's
    description renderer by name): the MLflow run's start and end are the record's, to the millisecond."""
    project.pytester.makepyfile(slow_pipeline=SLOW)
    project.config["pipeline"] = "slow_pipeline:factory"
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", "-p", "no:xdist", "-p", "no:anyio", subprocess=True)
    assert result.ret == 0, result.stdout.str()
    record = project.summary()
    run = mlflow_client.client(project.mlflow_uri).get_run(record["tracking"]["run_id"])
    assert run.info.start_time == epoch_ms(record["started_at"])
    assert run.info.end_time == epoch_ms(record["ended_at"])
    assert run.info.end_time - run.info.start_time >= 1000  # 4 cases of 0.4 s, not the few ms of the upload
    assert "pytest-genai: gates passed" in run.data.tags["mlflow.note.content"]  # the caller's markdown


def test_a_logged_run_folder_keeps_its_times_and_the_callers_description(tmp_path: Path, mlflow_uri: str) -> None:
    run_dir = run_folder(tmp_path / "runs" / "one")
    run_id = log_run_dir(run_dir, mlflow_uri, "seam-exp", describe=lambda record: f"{len(record.results)} cases")
    run = mlflow_client.client(mlflow_uri).get_run(run_id)
    assert (run.info.start_time, run.info.end_time) == (1767323045000, 1767323078000) == (epoch_ms(STARTED),
                                                                                           epoch_ms(ENDED))
    assert run.data.tags["mlflow.note.content"] == "2 cases" and run.info.status == "FINISHED"
    again = log_run_dir(run_folder(tmp_path / "runs" / "two"), mlflow_uri, "seam-exp")  # no renderer: no description
    assert "mlflow.note.content" not in mlflow_client.client(mlflow_uri).get_run(again).data.tags


# ----------------------------------------------------------------------------------------------- the resolver

def run_folder(folder: Path, *, results: bool = True) -> Path:
    folder.mkdir(parents=True)
    cases = tuple(CaseResult(id=f"c{i}", question="q?", answer="a", answers=("a",), em=1.0, f1=1.0, latency_ms=1.0,
                             input_tokens=1, output_tokens=1, cost_usd=0.0, seed=0) for i in range(2))
    write_run(folder, RunRecord(schema_version=2, status="complete", started_at=STARTED, ended_at=ENDED,
                                provenance=Provenance(pipeline="p", eval_set_path="evals/qa.jsonl", eval_set_hash="e" * 64),
                                metrics={"f1": 1.0}, results=cases if results else ()))
    return folder


@pytest.fixture
def logged(tmp_path: Path, mlflow_uri: str) -> dict[str, Any]:
    """A run folder logged to the store, and model versions pointing at it (by alias, by version, one without)."""
    folder = run_folder(tmp_path / "runs" / "20260102-030405-abcdef12")
    (folder / COMPARISON_FILE).write_text('{"regressed": []}\n')
    run_id = log_run_dir(folder, mlflow_uri, "seam-exp")
    client = mlflow_client.client(mlflow_uri)
    client.create_registered_model(MODEL)
    v1 = client.create_model_version(MODEL, str(folder), run_id=run_id, tags={"genai.eval_run_id": run_id})
    client.set_registered_model_alias(MODEL, "staging", v1.version)
    v2 = client.create_model_version(MODEL, str(folder), run_id=run_id)  # names no eval run
    return {"folder": folder, "run_id": run_id, "uri": mlflow_uri, "v1": str(v1.version), "v2": str(v2.version)}


def test_every_form_of_reference_opens_the_same_run(logged: dict[str, Any], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder, run_id, uri = logged["folder"], logged["run_id"], logged["uri"]
    by_path = resolve(str(folder), uri=uri)
    assert (by_path.source, by_path.folder, by_path.run_id, by_path.where) == (RUN_FOLDER, folder, run_id, str(folder))
    assert len(by_path.record.results) == 2
    assert resolve("runs/" + folder.name, uri=uri, base_dir=tmp_path).folder == tmp_path / "runs" / folder.name
    assert resolve(folder.name, uri=uri, results_dir=tmp_path / "runs").folder == folder  # a folder's name
    monkeypatch.chdir(tmp_path)
    assert resolve(f"runs/{folder.name}", uri=uri).folder == Path("runs") / folder.name  # the current folder
    for ref in (run_id, f"runs:/{run_id}", f"runs:/{run_id}/"):
        found = resolve(ref, uri=uri)
        assert (found.ref, found.source, found.run_id, found.folder, found.where) == (ref, MLFLOW_RUN, run_id, None,
                                                                                      f"mlflow:{run_id}")
        assert [r.id for r in found.record.results] == ["c0", "c1"] and found.record.started_at == STARTED
    assert resolve(run_id, uri=uri, with_results=False).record.results == ()
    for ref in (f"models:/{MODEL}@staging", f"models:/{MODEL}/{logged['v1']}"):
        found = resolve(ref, uri=uri)
        assert (found.source, found.run_id, found.model_version) == (REGISTERED_MODEL, run_id, f"{MODEL}/{logged['v1']}")
        assert len(found.record.results) == 2
    dest = tmp_path / "downloaded"
    found = resolve(run_id, uri=uri, download_to=dest, artifacts=(COMPARISON_FILE, "not-there.json"))
    assert found.folder == dest and {p.name for p in dest.iterdir()} == {RUN_FILE, RESULTS_FILE, COMPARISON_FILE}
    resolve(run_id, uri=uri, download_to=tmp_path / "all", artifacts=None, skip={COMPARISON_FILE})
    assert {p.name for p in (tmp_path / "all").iterdir()} == {RUN_FILE, RESULTS_FILE}  # every artifact but `skip`
    with opened(run_id, uri=uri, artifacts=(COMPARISON_FILE,)) as found:
        assert found.folder is not None and (found.folder / COMPARISON_FILE).is_file()
        kept = found.folder
    assert not kept.exists()  # the temporary folder is gone after the block


def test_unresolvable_references_say_which_and_what_is_accepted(logged: dict[str, Any], tmp_path: Path) -> None:
    uri, run_id = logged["uri"], logged["run_id"]

    def error(ref: str, **kwargs: Any) -> str:
        with pytest.raises(RunRefError) as info:
            resolve(ref, **{"uri": uri, **kwargs})
        return str(info.value)

    assert FORMS in error("  ")
    nope = tmp_path / "runs" / "nope"
    assert error(str(nope)) == f"{str(nope)!r}: no such run folder ({nope}); a run is named by {FORMS}"
    assert "'runs:/a/b' is not runs:/<run id>" in error("runs:/a/b") and FORMS in error("runs:/")
    assert error("models:/x") == "'models:/x' is not models:/NAME@ALIAS or models:/NAME/VERSION"
    missing_store = error("0123456789abcdef0123456789abcdef", uri=f"sqlite:///{tmp_path / 'none.db'}")
    assert missing_store.startswith("'0123456789abcdef0123456789abcdef' is not a run folder, and there is no MLflow "
                                    f"store at {tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()  # no empty store was made to look in
    assert error("0123456789abcdef0123456789abcdef").startswith(
        f"'0123456789abcdef0123456789abcdef' is not a run folder, and the MLflow store {uri} did not return it: ")
    assert error("runs:/0123456789abcdef0123456789abcdef").startswith(
        f"runs:/0123456789abcdef0123456789abcdef: the MLflow store {uri} did not return it: ")
    bare = mlflow_client.client(uri).create_run(mlflow_client.client(uri).get_run(run_id).info.experiment_id)
    assert error(bare.info.run_id) == (f"{bare.info.run_id}: MLflow run {bare.info.run_id} has no run.json artifact "
                                       "(it was not logged by pytest-genai, or its logging did not finish)")
    assert error(f"models:/{MODEL}/{logged['v2']}") == (f"models:/{MODEL}/{logged['v2']} is version {logged['v2']}, "
                                                        "which names no eval run (tag genai.eval_run_id)")
    assert error(f"models:/{MODEL}/99").startswith(f"models:/{MODEL}/99: the MLflow store {uri} did not return it: ")
    assert "there is no registered model 'seam-modle' — did you mean 'seam-model'?" in error("models:/seam-modle@prod")
    with pytest.raises(NoSuchAlias, match=r"models:/seam-model@production does not exist yet \(model seam-model has"):
        resolve(f"models:/{MODEL}@production", uri=uri)
    with pytest.raises(NoSuchAlias, match=r"does not exist yet \(no registered model 'zzz-other'\)"):
        resolve("models:/zzz-other@production", uri=uri)
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    with pytest.raises(RunLogError, match="is not a pytest-genai run folder"):
        resolve(str(not_a_run), uri=uri)
    assert issubclass(RunRefError, RunLogError)  # every command that reports a RunLogError reports these


def test_a_baseline_is_any_reference_and_a_missing_alias_is_no_baseline(logged: dict[str, Any], tmp_path: Path) -> None:
    uri, run_id = logged["uri"], logged["run_id"]
    by_alias = resolve_baseline(f"models:/{MODEL}@staging", uri, tmp_path)
    assert (by_alias.source, by_alias.run_id, by_alias.model_version) == ("registered model", run_id, f"{MODEL}/1")
    assert by_alias.available and len(by_alias.record.results) == 2  # type: ignore[union-attr]
    assert resolve_baseline(run_id, uri, tmp_path).run_id == run_id
    assert resolve_baseline(f"runs/{logged['folder'].name}", uri, tmp_path).source == "run folder"
    first = resolve_baseline(f"models:/{MODEL}@production", uri, tmp_path)
    assert not first.available and first.note == f"models:/{MODEL}@production does not exist yet (model {MODEL} has no such alias)"
    with pytest.raises(BaselineError, match="'runs/nope': no such run folder"):
        resolve_baseline("runs/nope", uri, tmp_path)
    empty = run_folder(tmp_path / "runs" / "empty", results=False)
    with pytest.raises(BaselineError, match=f"the run folder {empty} has no per-case results"):
        resolve_baseline(str(empty), uri, tmp_path)


def test_the_description_renderer_travels_to_the_tracking_worker_by_name() -> None:
    from pytest_genai.report.markdown import render_gate_summary
    from pytest_genai.tracking.warm import WorkerGone, by_name, from_name

    assert by_name(render_gate_summary) == "pytest_genai.report.markdown:render_gate_summary"
    assert from_name(by_name(render_gate_summary)) is render_gate_summary and by_name(None) is None
    with pytest.raises(WorkerGone):  # not importable by name: the session logs in-process instead
        by_name(lambda record: "")
