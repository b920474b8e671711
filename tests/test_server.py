"""The shared tracking server (scripts/server.py): real PostgreSQL + `mlflow server --app-name genai-basic-auth`.

Start prints only the exports; no credentials or a wrong password read and write nothing; a read-only user
cannot log runs or move aliases; a real session logs through it without the password landing anywhere; 20
concurrent sessions all log complete runs; a crash mid-session is recovered by `pytest-genai upload`; a restart
keeps runs and aliases."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from conftest import CASES, Project
from server_fixture import SCRIPT, MlflowServer, run_script

pytest_plugins = ["server_fixture"]

API = "/api/2.0/mlflow"
pytestmark = pytest.mark.slow  # a PostgreSQL cluster + MLflow server per worker


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch, mlflow_server: MlflowServer) -> Iterator[Any]:
    """`as_user(name)` / `as_user(None)`: MLflow's env credentials for this test (MLflow reads them per request)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    def use(user: str | None, password: str | None = None) -> Any:
        from mlflow.tracking import MlflowClient

        if user is None:
            monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
            monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
            monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
        else:
            for k, v in mlflow_server.env(user if user != mlflow_server.admin_user else None, password).items():
                monkeypatch.setenv(k, v)
        return MlflowClient(tracking_uri=mlflow_server.uri)

    yield use


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- start / stop --------------------------------------------------------------------------------------------

def test_start_prints_only_the_exports_and_a_client_using_them_can_log(mlflow_server: MlflowServer, as_user: Any) -> None:
    lines = mlflow_server.start_stdout.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [
        "export MLFLOW_TRACKING_URI", "export MLFLOW_TRACKING_USERNAME", "export MLFLOW_TRACKING_PASSWORD"]
    assert re.fullmatch(r"export MLFLOW_TRACKING_URI=http://127\.0\.0\.1:\d+", lines[0])
    assert len(mlflow_server.admin_password) >= 24
    for name in ("server.json", "basic_auth.ini", "env.sh"):  # they hold the passwords
        assert stat.S_IMODE((mlflow_server.folder / name).stat().st_mode) == 0o600, name
    state = mlflow_server.state()
    conf = (Path(state["pgdata"]) / "data" / "postgresql.conf").read_text()
    assert "listen_addresses = '127.0.0.1'" in conf
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert state["pg_password"] not in ps and mlflow_server.admin_password not in ps  # never on a command line

    client = as_user(mlflow_server.admin_user)
    exp = client.create_experiment(unique("start"))
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "f1", 0.75)
    client.log_text(run.info.run_id, "hello", "note.txt")  # proxied: stored in the server's folder
    client.set_terminated(run.info.run_id)
    got = client.get_run(run.info.run_id)
    assert got.data.metrics == {"f1": 0.75} and got.info.status == "FINISHED"
    stored = list((mlflow_server.folder / "artifacts").rglob("note.txt"))
    assert len(stored) == 1 and stored[0].read_text() == "hello"


def test_status_and_stop_are_exact_and_idempotent(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    assert run_script(mlflow_server.folder, "status").returncode == 0
    empty = tmp_path / "none"
    assert run_script(empty, "stop").returncode == 0  # nothing recorded: nothing to stop, not an error
    proc = subprocess.run([sys.executable, str(SCRIPT), "status"], env={**os.environ, "GENAI_SERVER_DIR": str(empty)},
                          capture_output=True, text=True)
    assert proc.returncode == 3 and "no server" in proc.stdout


# --- security ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("auth", [None, "wrong-password", "unknown-user"])
def test_without_valid_credentials_nothing_is_read_or_written(mlflow_server: MlflowServer, auth: str | None) -> None:
    creds = {None: None, "wrong-password": (mlflow_server.admin_user, mlflow_server.admin_password + "x"),
             "unknown-user": ("nobody", mlflow_server.admin_password)}[auth]
    u = mlflow_server.uri
    calls = [
        ("GET", f"{API}/experiments/search", {"params": {"max_results": 1}}),
        ("GET", f"{API}/experiments/get", {"params": {"experiment_id": "0"}}),
        ("POST", f"{API}/experiments/create", {"json": {"name": unique("intruder")}}),
        ("POST", f"{API}/runs/create", {"json": {"experiment_id": "0"}}),
        ("GET", f"{API}/registered-models/search", {}),
        ("POST", f"{API}/registered-models/create", {"json": {"name": unique("intruder")}}),
        ("POST", f"{API}/users/create", {"json": {"username": unique("intruder"), "password": "x" * 20}}),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts", {}),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/x.txt", {"data": b"payload"}),
        ("GET", "/ajax-api/2.0/mlflow/experiments/search", {"params": {"max_results": 1}}),
    ]
    for method, path, kw in calls:
        resp = requests.request(method, u + path, auth=creds, timeout=30, **kw)
        assert resp.status_code == 401, (method, path, resp.status_code, resp.text[:200])
    assert requests.get(u + "/health", timeout=10).status_code == 200  # the only open route


def test_mlflow_client_without_credentials_gets_401(mlflow_server: MlflowServer, as_user: Any) -> None:
    from mlflow.exceptions import MlflowException

    anonymous = as_user(None)
    with pytest.raises(MlflowException, match="401|[Uu]nauthorized|credentials"):
        anonymous.search_experiments(max_results=1)
    with pytest.raises(MlflowException, match="401|[Uu]nauthorized|credentials"):
        anonymous.create_experiment(unique("anon"))
    wrong = as_user(mlflow_server.admin_user, "not-the-password-at-all")
    with pytest.raises(MlflowException, match="401|[Uu]nauthorized|credentials"):
        wrong.create_run("0")


def _model_with_alias(client: Any, exp_id: str) -> tuple[str, str]:
    """A registered model with versions 1 and 2 (from one run) and alias champion -> 1."""
    run = client.create_run(exp_id)
    client.log_text(run.info.run_id, "weights", "model/MLmodel")
    client.set_terminated(run.info.run_id)
    name = unique("qa-model")
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", "1")
    return name, run.info.run_id


def test_read_only_user_cannot_create_runs_or_move_aliases(mlflow_server: MlflowServer, as_user: Any) -> None:
    from mlflow.exceptions import MlflowException

    admin = as_user(mlflow_server.admin_user)
    exp_id = admin.create_experiment(unique("team"))
    model, run_id = _model_with_alias(admin, exp_id)
    reader, editor = unique("reader"), unique("editor")
    for user in (reader, editor):
        mlflow_server.create_user(user, uuid.uuid4().hex + "Aa1!")
    mlflow_server.grant_experiment(reader, exp_id, "READ")
    mlflow_server.grant_registered_model(reader, model, "READ")
    mlflow_server.grant_registered_model(editor, model, "EDIT")

    ro = as_user(reader)
    assert ro.get_run(run_id).info.status == "FINISHED"  # it can read
    assert [r.info.run_id for r in ro.search_runs([exp_id])] == [run_id]
    assert ro.get_model_version_by_alias(model, "champion").version == "1"
    denied = "403|PERMISSION_DENIED|[Pp]ermission denied"
    with pytest.raises(MlflowException, match=denied):
        ro.create_run(exp_id)
    with pytest.raises(MlflowException, match=denied):
        ro.log_metric(run_id, "f1", 0.0)
    with pytest.raises(MlflowException, match=denied):
        ro.set_tag(run_id, "genai.gates_passed", "true")
    with pytest.raises(MlflowException, match=denied):
        ro.set_registered_model_alias(model, "champion", "2")
    with pytest.raises(MlflowException, match=denied):
        ro.delete_registered_model_alias(model, "champion")
    with pytest.raises(MlflowException, match=denied):
        ro.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    assert admin.get_model_version_by_alias(model, "champion").version == "1"
    assert admin.get_run(run_id).data.metrics == {}

    ed = as_user(editor)  # the same calls with EDIT on the model succeed: the denials above are the permission's
    ed.set_registered_model_alias(model, "champion", "2")
    assert admin.get_model_version_by_alias(model, "champion").version == "2"


def _write_pipeline(project: Project, name: str, body: str) -> None:
    project.pytester.makepyfile(**{name: body})


def _session_env(mlflow_server: MlflowServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTEST_XDIST", "PYTEST_CURRENT"))}
    # Telemetry off: with no internet its thread unsets _MLFLOW_TELEMETRY_SESSION_ID while a request thread iterates
    # os.environ (requests' proxy lookup): KeyError '_MLFLOW_TELEMETRY_SESSION_ID' fails the logging (MLflow 3.17.2)
    env.update(mlflow_server.env(), MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true", MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


def test_a_session_logs_through_env_credentials_and_never_records_them(
        project: Project, mlflow_server: MlflowServer, as_user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in mlflow_server.env().items():
        monkeypatch.setenv(k, v)
    exp = unique("creds")
    project.write_config(tracking__uri=None, tracking__experiment=exp)  # the URI and credentials come from the env
    result = project.run("--genai-config", "genai.yaml", "-v", subprocess=True)
    assert result.ret == 0, result.stdout.str()[-3000:]
    password, user = mlflow_server.admin_password, mlflow_server.admin_user
    out = result.stdout.str() + result.stderr.str()
    assert password not in out

    client = as_user(user)
    (run,) = client.search_runs([client.get_experiment_by_name(exp).experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["f1"] == 1.0
    values = list(run.data.params.values()) + list(run.data.tags.values()) + list(run.data.params) + list(run.data.tags)
    assert not [v for v in values if password in v]
    # the MLflow-native parts through the server's public API: dataset input, one trace per case with assessments
    assert run.inputs.dataset_inputs[0].dataset.name == "qa"
    traces = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, max_results=50)
    assert sorted(t.info.tags["genai.case_id"] for t in traces) == ["h2o", "moon", "paris", "rome"]
    assert all({"em", "f1", "pass"} <= {a.name for a in t.info.assessments} for t in traces)
    assert not [t for t in traces if password in t.to_json()] and run.data.tags["genai.traces"] == "4"
    assert not [v for v in values if user in v], "the tracking username is not provenance either"
    run_dir = project.run_dirs()[-1]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["tracking"]["uri"] == mlflow_server.uri and record["tracking"]["run_id"] == run.info.run_id
    dest = Path(client.download_artifacts(run.info.run_id, "", str(project.path / "downloaded")))
    for folder in (run_dir, dest, mlflow_server.folder / "artifacts"):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files
        leaks = [str(p) for p in files if password.encode() in p.read_bytes()]
        assert leaks == [], f"the password is in {leaks}"


# --- load and faults -----------------------------------------------------------------------------------------

LOAD_SESSIONS = int(os.environ.get("GENAI_LOAD_SESSIONS", "20"))

# The last case waits until every session has reached it, so all of them log to the server at the same moment
# (staggered process start-up would otherwise spread the logging out and hide races).
BARRIER = '''
import os, time, uuid
from pathlib import Path

def factory(config):
    def pipeline(case):
        if case.id == "moon":
            folder = Path(os.environ["GENAI_TEST_BARRIER"])
            (folder / uuid.uuid4().hex).touch()
            deadline = time.monotonic() + 300
            while len(os.listdir(folder)) < int(os.environ["GENAI_TEST_SESSIONS"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            return "Neil Armstrong"
        return (case.context or "").split()[0]
    return pipeline
'''


def test_concurrent_sessions_all_log_complete_runs(project: Project, mlflow_server: MlflowServer, as_user: Any) -> None:
    exp = unique("load")  # new: the sessions also race to create it, as the first run of a CI matrix does
    _write_pipeline(project, "barrier_pipe", BARRIER)
    project.write_config(tracking__uri=None, tracking__experiment=exp, pipeline="barrier_pipe:factory")
    (project.path / "barrier").mkdir()
    env = _session_env(mlflow_server, GENAI_TEST_BARRIER=str(project.path / "barrier"),
                       GENAI_TEST_SESSIONS=str(LOAD_SESSIONS))
    cmd = [sys.executable, "-m", "pytest", "--genai-config", "genai.yaml", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    started = time.monotonic()
    procs = [subprocess.Popen(cmd, cwd=project.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(LOAD_SESSIONS)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    elapsed = time.monotonic() - started
    failed = [(p.returncode, o[-4000:]) for p, o in zip(procs, outs) if p.returncode != 0]
    assert failed == [], "\n\n".join(o for _, o in failed)

    client = as_user(mlflow_server.admin_user)
    runs = client.search_runs([client.get_experiment_by_name(exp).experiment_id], max_results=1000)
    dirs = project.run_dirs()
    assert len(dirs) == LOAD_SESSIONS and len(runs) == LOAD_SESSIONS, (len(dirs), len(runs))
    by_id = {r.info.run_id: r for r in runs}
    recorded = [json.loads((d / "run.json").read_text())["tracking"]["run_id"] for d in dirs]
    assert sorted(recorded) == sorted(by_id)  # one run per session: none lost, none duplicated
    assert {r.info.run_name for r in runs} == {"barrier_pipe:factory · fixed · qa"}  # one config: one descriptive name
    assert all(r.data.tags["genai.traces"] == str(len(CASES)) for r in runs)  # every session's traces, complete
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.metrics["f1"] == 1.0 and r.data.metrics["cases_total"] == len(CASES)
        assert r.data.tags["genai.partial"] == "false" and r.data.tags["genai.gates_passed"] == "true"
        assert "genai.tracking_warnings" not in r.data.tags, r.data.tags["genai.tracking_warnings"]  # dataset, prompt
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"run.json", "results.jsonl", "renders.jsonl", "gates.json", "config.resolved.yaml"} <= names
    print(f"{LOAD_SESSIONS} concurrent sessions logged in {elapsed:.1f}s")


KILLER = '''
import os, subprocess, sys

def factory(config):
    def pipeline(case):
        if case.id == "h2o":  # mid-session: the tracking server crashes
            subprocess.run([sys.executable, os.environ["GENAI_TEST_SERVER_SCRIPT"], "kill"], check=True,
                           env={**os.environ, "GENAI_SERVER_DIR": os.environ["GENAI_TEST_SERVER_DIR"]})
        return (case.context or "").split()[0] if case.id != "moon" else " ".join(case.context.split()[:2])
    return pipeline
'''


def test_server_killed_mid_session_restart_keeps_runs_and_aliases_and_upload_logs_the_folder(
        project: Project, mlflow_server: MlflowServer, as_user: Any) -> None:
    admin = as_user(mlflow_server.admin_user)
    earlier_exp = admin.create_experiment(unique("durable"))
    model, earlier_run = _model_with_alias(admin, earlier_exp)
    exp = unique("crash")
    _write_pipeline(project, "killer_pipe", KILLER)
    project.write_config(tracking__uri=None, tracking__experiment=exp, pipeline="killer_pipe:factory")
    env = _session_env(mlflow_server, GENAI_TEST_SERVER_SCRIPT=str(SCRIPT), GENAI_TEST_SERVER_DIR=str(mlflow_server.folder))
    uri, before = mlflow_server.uri, mlflow_server.start_stdout
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "--genai-config", "genai.yaml", "-p", "no:cacheprovider",
                               "-p", "no:xdist"], cwd=project.path, env=env, capture_output=True, text=True, timeout=300)
        assert not requests_ok(uri)  # it did die mid-session
        run_script(mlflow_server.folder, "stop")  # PostgreSQL too: a restart of the whole server
        run_script(mlflow_server.folder, "stop")  # idempotent
    finally:
        restarted = mlflow_server.restart()
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "TRACKING FAILED" in proc.stdout and "pytest-genai upload" in proc.stdout
    assert restarted == before  # same URI and credentials: clients and recorded run folders stay right

    admin = as_user(mlflow_server.admin_user)  # what was there before the crash is still there
    assert admin.get_run(earlier_run).info.status == "FINISHED"
    assert admin.get_model_version_by_alias(model, "champion").version == "1"

    (run_dir,) = project.run_dirs()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["tracking"]["run_id"] is None and record["tracking"]["uri"] == uri
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == len(CASES)
    up = subprocess.run([sys.executable, "-m", "pytest_genai.cli", "upload", str(run_dir)], env=env,  # no --tracking-uri
                        capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr[-3000:]
    assert uri in up.stdout and mlflow_server.admin_password not in up.stdout + up.stderr
    (run,) = admin.search_runs([admin.get_experiment_by_name(exp).experiment_id])  # no half-logged duplicate
    assert run.info.status == "FINISHED" and run.data.metrics["f1"] == 1.0
    assert json.loads((run_dir / "run.json").read_text())["tracking"]["run_id"] == run.info.run_id


def requests_ok(uri: str) -> bool:
    try:
        return requests.get(uri + "/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False
