"""pytest plugin: `mlflow_server`, a real PostgreSQL-backed, authenticated MLflow server for the session.

Started through `scripts/server.py start` (what `make server` runs) into a tmp folder, so each xdist worker
gets its own cluster and ports. Missing PostgreSQL binaries fail the tests that need it (CI installs them):
a skip would hide that the security and load tests never ran."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "server.py"
EXPORT = re.compile(r"^export (MLFLOW_TRACKING_URI|MLFLOW_TRACKING_USERNAME|MLFLOW_TRACKING_PASSWORD)=(\S+)$")
START_TIMEOUT_S = 240


class ServerScriptError(RuntimeError):
    pass


def run_script(folder: Path, command: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """`python scripts/server.py COMMAND` on `folder`, with no MLflow credentials of the caller leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env["GENAI_SERVER_DIR"] = str(folder)
    env.setdefault("GENAI_SERVER_WORKERS", "1")  # one uvicorn worker (threads) per test server: 2 cores, 2 xdist workers
    proc = subprocess.run([sys.executable, str(SCRIPT), command], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        raise ServerScriptError(f"scripts/server.py {command} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def parse_exports(stdout: str) -> dict[str, str]:
    """The three `export NAME=value` lines, and nothing else: anything more on stdout is a bug of `start`."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        m = EXPORT.match(line)
        if not m:
            raise ServerScriptError(f"unexpected line on the stdout of `start`: {line!r}")
        out[m.group(1)] = m.group(2)
    if len(out) != 3 or len(stdout.splitlines()) != 3:
        raise ServerScriptError(f"expected exactly 3 export lines, got:\n{stdout}")
    return out


@dataclass
class MlflowServer:
    """A running server: its URI, a generated admin, user management through the basic-auth REST API."""

    folder: Path
    exports: dict[str, str]
    start_stdout: str
    users: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return self.exports["MLFLOW_TRACKING_URI"]

    @property
    def admin_user(self) -> str:
        return self.exports["MLFLOW_TRACKING_USERNAME"]

    @property
    def admin_password(self) -> str:
        return self.exports["MLFLOW_TRACKING_PASSWORD"]

    def env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """The three variables a client needs (the admin's, or `user`'s)."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": user or self.admin_user,
                "MLFLOW_TRACKING_PASSWORD": password or (self.users[user] if user else self.admin_password)}

    def _admin(self, method: str, path: str, **kw: Any) -> Any:
        import requests

        resp = requests.request(method, self.uri + path, auth=(self.admin_user, self.admin_password), timeout=30, **kw)
        if resp.status_code != 200:
            raise ServerScriptError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else {}

    def create_user(self, name: str, password: str) -> None:
        self._admin("POST", "/api/2.0/mlflow/users/create", json={"username": name, "password": password})
        self.users[name] = password

    def grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        """resource_type: experiment (id) | registered_model (name) | ...; permission: READ, EDIT, MANAGE, ..."""
        self._admin("POST", "/api/3.0/mlflow/users/permissions/grant", json={
            "username": username, "resource_type": resource_type, "resource_id": resource_id, "permission": permission})

    def grant_experiment(self, username: str, experiment_id: str, permission: str) -> None:
        self.grant(username, "experiment", experiment_id, permission)

    def grant_registered_model(self, username: str, name: str, permission: str) -> None:
        self.grant(username, "registered_model", name, permission)

    def kill(self) -> None:
        """SIGKILL the MLflow server (PostgreSQL keeps running): a crash, seen from the clients."""
        run_script(self.folder, "kill")

    def stop(self) -> None:
        run_script(self.folder, "stop")

    def restart(self, full: bool = True) -> str:
        """Start again on the same cluster (after stopping both processes if `full`); returns the new stdout."""
        if full:
            self.stop()
        out = run_script(self.folder, "start").stdout
        self.exports = parse_exports(out)
        return out

    def state(self) -> dict[str, Any]:
        return json.loads((self.folder / "server.json").read_text())


def postgres_missing() -> str | None:
    if glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb") or os.environ.get("GENAI_PG_BINDIR"):
        return None
    return ("PostgreSQL server binaries are not installed (no /usr/lib/postgresql/*/bin/initdb): the shared-server "
            "tests need them; `apt-get install -y postgresql` (.ci/run does this)")


def start_server(folder: Path) -> MlflowServer:
    problem = postgres_missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        out = run_script(folder, "start").stdout
        return MlflowServer(folder, parse_exports(out), out)
    except (ServerScriptError, subprocess.TimeoutExpired) as exc:
        log = folder / "mlflow.log"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
        try:  # a start that timed out may have left processes: end them (exactly those the folder records)
            run_script(folder, "stop", timeout=60)
        except (ServerScriptError, subprocess.TimeoutExpired):
            pass
        pytest.fail(f"could not start the MLflow server: {exc}\n{tail}", pytrace=False)


def destroy(server: MlflowServer) -> None:
    """Stop it; delete a cluster kept outside the tmp folder (pytest cleans its own tmp folders)."""
    pgdata = Path(server.state()["pgdata"]) if (server.folder / "server.json").is_file() else None
    run_script(server.folder, "stop")
    if pgdata is not None and not pgdata.is_relative_to(server.folder):
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        destroy(server)
