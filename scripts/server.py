"""`make server` / `make server-stop`: a shared, authenticated MLflow tracking server on this machine.

A throwaway PostgreSQL cluster in a folder (default build/server, or $GENAI_SERVER_DIR) holds the tracking store
and MLflow's basic-auth store; `mlflow server --app-name genai-basic-auth` serves them with proxied artifacts, on
127.0.0.1 only: MLflow's basic-auth app plus pytest-genai's endpoint that takes a run's case traces in batches
(pytest_genai/tracking/trace_batch.py; plain `basic-auth` when pytest-genai is not installed beside MLflow).
`start` prints only the `export` lines a shell needs (progress goes to stderr):

    eval "$(python scripts/server.py start)"

`stop` ends exactly the processes `start` recorded in the folder (never by name); `status` says what runs;
`kill` SIGKILLs the MLflow server alone (a crash, for fault tests); `destroy` stops and deletes the folder.
A second `start` on the same folder reuses its cluster, ports and credentials, so runs and aliases survive.

Stdlib only: it runs with the venv's python before anything else is imported. PostgreSQL refuses to run as root:
as root, the cluster belongs to the `postgres` user (Debian's package creates it) and its commands run through
`runuser`."""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / "build" / "server"
PG_USER = "mlflow"  # the database role MLflow connects as (not an MLflow user)
TRACKING_DB, AUTH_DB = "mlflow", "mlflow_auth"
STATE = "server.json"  # ports, pids, where the cluster is: 0600
APP = "genai-basic-auth"  # pytest_genai.tracking.trace_batch.APP_NAME (this script imports nothing of the package)
HEALTH_TIMEOUT_S = float(os.environ.get("GENAI_SERVER_TIMEOUT", "120"))


class ServerError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


@dataclass
class State:
    """What `start` made, so `stop` ends exactly that. Secrets live here too: the file is 0600."""

    pgdata: str
    pg_port: int
    pg_password: str
    mlflow_port: int
    admin_user: str
    admin_password: str
    flask_secret: str = ""  # MLFLOW_FLASK_SERVER_SECRET_KEY: one per cluster, shared by the workers (CSRF)
    mlflow_pid: int | None = None
    mlflow_start_ticks: int | None = None  # /proc start time: a recycled pid is not ours

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"


def log(msg: str) -> None:
    print(f"server: {msg}", file=sys.stderr, flush=True)


# --- the folder and its state -------------------------------------------------------------------------------

def server_dir() -> Path:
    return Path(os.environ.get("GENAI_SERVER_DIR") or DEFAULT_DIR).absolute()


def read_state(folder: Path) -> State | None:
    path = folder / STATE
    if not path.is_file():
        return None
    return State(**json.loads(path.read_text()))


def write_state(folder: Path, state: State) -> None:
    path = folder / STATE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(state), f, indent=2)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


# --- PostgreSQL ---------------------------------------------------------------------------------------------

def pg_bindir() -> Path:
    """$GENAI_PG_BINDIR, else the newest Debian /usr/lib/postgresql/N/bin, else initdb on PATH."""
    explicit = os.environ.get("GENAI_PG_BINDIR")
    candidates = [explicit] if explicit else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                                    key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                                                    reverse=True)
    on_path = shutil.which("initdb")
    if on_path and not explicit:
        candidates.append(str(Path(on_path).resolve().parent))  # /usr/local/bin/initdb may be a symlink
    for c in candidates:
        if c and all((Path(c) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres", "psql")):
            return Path(c)
    raise ServerError("PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) not found in "
                      f"{explicit or '/usr/lib/postgresql/*/bin or on PATH'}: "
                      "install them with `apt-get install -y postgresql` (or set GENAI_PG_BINDIR)")


def pg_owner() -> str | None:
    """None: run PostgreSQL as ourselves. As root: as the `postgres` system user (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerError("running as root, and there is no `postgres` user to run PostgreSQL as (it refuses root): "
                          "`apt-get install -y postgresql` creates it") from None
    return "postgres"


def as_owner(cmd: list[str]) -> list[str]:
    owner = pg_owner()
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


def reachable_by(owner: str | None, folder: Path) -> bool:
    if owner is None:
        return True
    return subprocess.run(["runuser", "-u", owner, "--", "test", "-w", str(folder)], capture_output=True).returncode == 0


def choose_pgdata(folder: Path) -> Path:
    """<folder>/pg when the cluster's owner can reach it; else (a 0700 pytest tmp folder, as root) a private
    folder under /tmp, recorded in the state so `stop`/`destroy` find it."""
    owner = pg_owner()
    inside = folder / "pg"
    if owner is None:
        return inside
    inside.mkdir(exist_ok=True)
    shutil.chown(inside, owner, owner)
    os.chmod(inside, 0o700)
    if reachable_by(owner, inside) and len(str(inside)) < 80:  # unix socket paths are limited to ~107 bytes
        return inside
    inside.rmdir()
    out = Path(tempfile.mkdtemp(prefix="genai-pg-"))
    shutil.chown(out, owner, owner)
    log(f"the postgres user cannot reach {folder} (or the path is too long): the cluster lives in {out}")
    return out


def run_checked(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd="/")
    if proc.returncode != 0:
        raise ServerError(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def init_cluster(pgdata: Path, password: str) -> None:
    bindir = pg_bindir()
    owner = pg_owner()
    pgdata.mkdir(parents=True, exist_ok=True)
    if owner:
        shutil.chown(pgdata, owner, owner)
    os.chmod(pgdata, 0o700)
    data = pgdata / "data"
    pwfile = pgdata / "pwfile"
    write_private(pwfile, password + "\n")
    if owner:
        shutil.chown(pwfile, owner, owner)
    try:
        # host connections need the role's password; local (socket) connections only for the cluster's owner
        run_checked(as_owner([str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--pwfile", str(pwfile),
                              "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--no-instructions"]),
                    "initdb")
    finally:
        pwfile.unlink(missing_ok=True)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\n# pytest-genai scripts/server.py: loopback only, socket in the cluster folder\n"
                   f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{pgdata}'\n"
                   "max_connections = 200\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")


def pg_running(pgdata: Path) -> bool:
    data = pgdata / "data"
    if not (data / "postmaster.pid").is_file():
        return False
    proc = subprocess.run(as_owner([str(pg_bindir() / "pg_ctl"), "-D", str(data), "status"]), capture_output=True, cwd="/")
    return proc.returncode == 0


def start_pg(state: State) -> None:
    pgdata = Path(state.pgdata)
    if pg_running(pgdata):
        return
    bindir = pg_bindir()
    logfile = pgdata / "postgres.log"
    for attempt in range(3):
        if attempt or not port_free(state.pg_port):
            state.pg_port = free_port()
        proc = subprocess.run(as_owner([str(bindir / "pg_ctl"), "-D", str(pgdata / "data"), "-l", str(logfile), "-w",
                                        "-t", "60", "-o", f"-p {state.pg_port}", "start"]),
                              capture_output=True, text=True, cwd="/")
        if proc.returncode == 0:
            return
    tail = logfile.read_text()[-2000:] if logfile.is_file() else ""
    raise ServerError(f"PostgreSQL did not start (pg_ctl: {proc.stderr.strip() or proc.stdout.strip()}); log tail:\n{tail}")


def stop_pg(pgdata: Path) -> None:
    if not pg_running(pgdata):
        return
    run_checked(as_owner([str(pg_bindir() / "pg_ctl"), "-D", str(pgdata / "data"), "-m", "fast", "-w", "stop"]),
                "pg_ctl stop")


def create_databases(state: State) -> None:
    psql = pg_bindir() / "psql"
    env = {"PGPASSWORD": state.pg_password}
    base = [str(psql), "-h", "127.0.0.1", "-p", str(state.pg_port), "-U", PG_USER, "-d", "postgres", "-tAc"]
    existing = run_checked(base + ["SELECT datname FROM pg_database"], "listing databases", env).split()
    for db in (TRACKING_DB, AUTH_DB):
        if db not in existing:
            run_checked(base + [f"CREATE DATABASE {db}"], f"creating database {db}", env)


def pg_uri(state: State, db: str, with_password: bool = False) -> str:
    """The password goes to MLflow through PGPASSWORD, never on a command line (`ps` shows those)."""
    cred = f"{PG_USER}:{state.pg_password}" if with_password else PG_USER
    # +psycopg2: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not what MLflow's extra installs
    return f"postgresql+psycopg2://{cred}@127.0.0.1:{state.pg_port}/{db}"


# --- ports and processes ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """As the servers will bind it (SO_REUSEADDR): a killed server's TIME_WAIT connections do not count, so a
    restart keeps its port, and the URI clients and run folders recorded stays right."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime


def ours_alive(state: State) -> bool:
    """The recorded MLflow process is alive and is the one we started (not a recycled pid)."""
    pid = state.mlflow_pid
    return bool(pid) and start_ticks(pid) is not None and start_ticks(pid) == state.mlflow_start_ticks  # type: ignore[arg-type]


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: its group is exactly the server and its workers
    except ProcessLookupError:
        pass


def group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def stop_mlflow(folder: Path, state: State, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if state.mlflow_pid and (ours_alive(state) or group_alive(state.mlflow_pid)):
        pid = state.mlflow_pid
        signal_group(pid, sig)
        deadline = time.monotonic() + timeout
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_alive(pid):
            signal_group(pid, signal.SIGKILL)
            while group_alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.1)
    state.mlflow_pid = state.mlflow_start_ticks = None
    write_state(folder, state)


# --- MLflow -------------------------------------------------------------------------------------------------

def auth_ini(state: State) -> str:
    return ("[mlflow]\n"
            f"default_permission = {os.environ.get('GENAI_SERVER_DEFAULT_PERMISSION', 'READ')}\n"
            f"database_uri = {pg_uri(state, AUTH_DB)}\n"
            f"admin_username = {state.admin_user}\n"
            f"admin_password = {state.admin_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Each request otherwise re-hashes the password (~0.4 s here). Cached per worker, keyed by an HMAC of
            # (user, password): a wrong password is never cached; a deleted user or changed password may keep
            # working on the other workers for at most this long.
            f"auth_cache_ttl_seconds = {os.environ.get('GENAI_SERVER_AUTH_CACHE_S', '60')}\n")


def mlflow_env(folder: Path, state: State) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update({"MLFLOW_AUTH_CONFIG_PATH": str(folder / "basic_auth.ini"), "PGPASSWORD": state.pg_password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": state.flask_secret or state.pg_password,
                "PYTHONUNBUFFERED": "1"})
    # MLflow's job runner (GenAI scorer jobs: a runner and ~7 huey consumers, ~1 GB) is not needed to track runs
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # a private server does not report usage
    return env


def app_name() -> str:
    """pytest-genai's server app when its entry point is installed (the batch endpoint for case traces), else
    MLflow's own basic-auth app: the clients then log each case trace with MLflow's per-trace calls."""
    from importlib.metadata import entry_points

    return APP if any(e.name == APP for e in entry_points(group="mlflow.app")) else "basic-auth"


def start_mlflow(folder: Path, state: State) -> None:
    if ours_alive(state):
        return
    (folder / "artifacts").mkdir(exist_ok=True)
    workers = os.environ.get("GENAI_SERVER_WORKERS", "2")  # 2 cores here; each worker is ~250 MB
    for attempt in range(3):
        if attempt or not port_free(state.mlflow_port):
            state.mlflow_port = free_port()
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", pg_uri(state, TRACKING_DB),
               "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts", "--app-name", app_name(),
               "--host", "127.0.0.1", "--port", str(state.mlflow_port), "--workers", workers]
        logpath = folder / "mlflow.log"
        offset = logpath.stat().st_size if logpath.exists() else 0
        logf = open(logpath, "ab")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, cwd=folder,
                                env=mlflow_env(folder, state), start_new_session=True)
        logf.close()
        state.mlflow_pid, state.mlflow_start_ticks = proc.pid, start_ticks(proc.pid)
        write_state(folder, state)
        if wait_healthy(state, proc):
            return
        stop_mlflow(folder, state)
        with open(logpath, "rb") as f:
            f.seek(offset)
            if b"Address already in use" not in f.read():  # only a lost port race is worth another try
                break
    tail = (folder / "mlflow.log").read_text(errors="replace")[-3000:]
    raise ServerError(f"mlflow server did not become healthy on {state.uri} (log {folder / 'mlflow.log'}):\n{tail}")


def wait_healthy(state: State, proc: subprocess.Popen[bytes] | None = None, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if healthy(state):
            return True
        time.sleep(0.25)
    return False


def healthy(state: State) -> bool:
    try:
        with urllib.request.urlopen(f"{state.uri}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


# --- commands -----------------------------------------------------------------------------------------------

def exports(state: State) -> list[str]:
    return [f"export MLFLOW_TRACKING_URI={state.uri}", f"export MLFLOW_TRACKING_USERNAME={state.admin_user}",
            f"export MLFLOW_TRACKING_PASSWORD={state.admin_password}"]


def cmd_start(folder: Path) -> int:
    started = time.monotonic()
    pg_bindir()  # fail early and clearly
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700 if pg_owner() is None else 0o711)
    state = read_state(folder)
    if state is None or not (Path(state.pgdata) / "data" / "PG_VERSION").is_file():
        state = State(pgdata=str(choose_pgdata(folder)), pg_port=free_port(), pg_password=secrets.token_urlsafe(24),
                      mlflow_port=free_port(), admin_user=f"admin-{secrets.token_hex(3)}",
                      admin_password=secrets.token_urlsafe(24), flask_secret=secrets.token_urlsafe(32))
        log(f"initdb {state.pgdata}")
        init_cluster(Path(state.pgdata), state.pg_password)
        write_state(folder, state)
    log(f"postgres on 127.0.0.1 (cluster {state.pgdata})")
    was_running = pg_running(Path(state.pgdata))
    start_pg(state)
    write_state(folder, state)
    try:
        create_databases(state)
        write_private(folder / "basic_auth.ini", auth_ini(state))
        log(f"mlflow server --app-name {app_name()} ...")
        start_mlflow(folder, state)
    except BaseException:
        if not was_running:  # a failed start leaves nothing of its own running
            stop_pg(Path(state.pgdata))
        raise
    write_private(folder / "env.sh", "\n".join(exports(state)) + "\n")
    log(f"healthy at {state.uri} in {time.monotonic() - started:.1f}s (exports also in {folder / 'env.sh'}; "
        f"`make server-stop` ends it)")
    print("\n".join(exports(state)), flush=True)
    return 0


def cmd_stop(folder: Path) -> int:
    state = read_state(folder)
    if state is None:
        log(f"nothing to stop in {folder}")
        return 0
    stop_mlflow(folder, state)
    stop_pg(Path(state.pgdata))
    log(f"stopped (data kept in {folder}; `scripts/server.py destroy` deletes it)")
    return 0


def cmd_kill(folder: Path) -> int:
    """SIGKILL the MLflow server (not PostgreSQL): what a crash looks like to a client."""
    state = read_state(folder)
    if state is not None:
        stop_mlflow(folder, state, signal.SIGKILL, timeout=10)
    return 0


def cmd_status(folder: Path) -> int:
    state = read_state(folder)
    if state is None:
        print(f"no server in {folder}")
        return 3
    pg = pg_running(Path(state.pgdata))
    ml = ours_alive(state) and healthy(state)
    print(f"postgres: {'running' if pg else 'stopped'} (127.0.0.1:{state.pg_port}, {state.pgdata})")
    print(f"mlflow:   {'healthy' if ml else 'stopped'} ({state.uri}, pid {state.mlflow_pid})")
    return 0 if pg and ml else 3


def cmd_destroy(folder: Path) -> int:
    state = read_state(folder)
    cmd_stop(folder)
    if state is not None and not Path(state.pgdata).is_relative_to(folder):
        shutil.rmtree(state.pgdata, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    log(f"deleted {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "kill", "destroy"])
    args = parser.parse_args(argv)
    folder = server_dir()
    try:
        return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status, "kill": cmd_kill,
                "destroy": cmd_destroy}[args.command](folder)
    except ServerError as exc:
        print(f"server {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
