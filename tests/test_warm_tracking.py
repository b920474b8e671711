"""The warm tracking worker: MLflow imported and the store opened in a second process beside the cases, the run
folder logged there, and the session falling back to logging in-process when the worker is not there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Project

from pytest_genai.tracking.warm import ENV_OFF, WarmTracker, WorkerError, WorkerGone

# a conftest that tells the test what the session's own process had imported when the run was finished
PROBE = '''
import json, os, sys

def pytest_genai_run_finished(record, run_dir):
    with open(os.environ["GENAI_PROBE"], "w") as fh:
        json.dump({"mlflow_imported": "mlflow" in sys.modules, "run_id": record.tracking.run_id,
                   "traces": record.tracking.traces}, fh)
'''


def _logged(uri: str, run_id: str) -> tuple[dict[str, str], int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    traces = client.search_traces(locations=[run.info.experiment_id], run_id=run_id, max_results=100)
    return dict(run.data.metrics), len(traces)


@pytest.mark.parametrize("worker", ["on", "off"])
def test_session_logs_through_the_worker_without_importing_mlflow(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                                   worker: str) -> None:
    probe = project.path / "probe.json"
    monkeypatch.setenv("GENAI_PROBE", str(probe))
    if worker == "off":
        monkeypatch.setenv(ENV_OFF, "0")
    project.pytester.makeconftest(PROBE)
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", "-p", "no:xdist", "-p", "no:anyio", subprocess=True)
    assert result.ret == 0, result.stdout.str()
    seen = json.loads(probe.read_text())
    # with the worker, the session itself never imported MLflow, and the run is in the store all the same
    assert seen["mlflow_imported"] is (worker == "off")
    metrics, traces = _logged(project.mlflow_uri, seen["run_id"])
    assert traces == seen["traces"] == 4
    assert metrics["f1"] == pytest.approx(json.loads((project.run_dirs()[-1] / "run.json").read_text())["metrics"]["f1"])
    assert f"mlflow run: {seen['run_id']}" in result.stdout.str()


def test_a_store_failure_in_the_worker_is_the_same_tracking_error(project: Project, tmp_path: Path) -> None:
    """Logging fails in the worker (nothing listens there): the exception keeps its class name and message, so
    the session's TRACKING FAILED line reads as it would in-process."""
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", "-p", "no:xdist", "-p", "no:anyio", subprocess=True)
    assert result.ret == 0
    run_dir = project.run_dirs()[-1]
    tracker = WarmTracker.spawn("http://127.0.0.1:9")  # nothing listens on the discard port
    assert tracker is not None
    try:
        with pytest.raises(WorkerError) as err:
            tracker.log_run_dir(run_dir, "http://127.0.0.1:9", "test-exp")
        assert "127.0.0.1:9" in str(err.value) and type(err.value).__name__ != "WorkerError"
    finally:
        tracker.close()


def test_a_dead_worker_means_logging_in_process(project: Project) -> None:
    project.write_config()
    assert project.run("--genai-config", "genai.yaml", subprocess=True).ret == 0
    tracker = WarmTracker.spawn(project.mlflow_uri)
    assert tracker is not None
    tracker._proc.kill()
    tracker._proc.wait(timeout=30)
    with pytest.raises(WorkerGone):
        tracker.log_run_dir(project.run_dirs()[-1], project.mlflow_uri, "test-exp")
    tracker.close()


KILLER = PROBE + '''

def pytest_collection_finish(session):
    warm = session.config.pluginmanager.get_plugin("genai-eval").warm
    warm._proc.kill()
    warm._proc.wait()
'''


def test_a_session_whose_worker_died_logs_in_process(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = project.path / "probe.json"
    monkeypatch.setenv("GENAI_PROBE", str(probe))
    project.pytester.makeconftest(KILLER)
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", "-p", "no:xdist", "-p", "no:anyio", subprocess=True)
    assert result.ret == 0, result.stdout.str()
    seen = json.loads(probe.read_text())
    assert seen["mlflow_imported"] is True  # the worker was gone: the session imported MLflow and logged itself
    assert _logged(project.mlflow_uri, seen["run_id"])[1] == 4


def test_a_worker_never_asked_to_log_is_ended_at_once(tmp_path: Path) -> None:
    """A session that stops before logging (a usage error after start-up, nothing selected) does not wait for the
    worker to finish importing MLflow: close() kills it. One that answered a request exits on its own."""
    idle = WarmTracker.spawn(f"sqlite:///{tmp_path / 'none.db'}")
    assert idle is not None
    idle.close()
    assert idle._proc.returncode is not None and idle._proc.returncode < 0  # killed, not waited for
