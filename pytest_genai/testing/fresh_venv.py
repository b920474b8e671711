"""Real installs of the built distribution into fresh virtual environments, outside this repository: what the
slow install tests (tests/test_install.py) and the install benchmark (benchmarks/bench_install.py) both do.

The fresh environments take the versions this repository's lock pins (as pip constraints, without hashes), so
that a run resolves the same way on every machine and reuses pip's cache; pip still resolves the package's own
ranges against them, and `pip check` runs after each install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
TIMEOUT_S = 1800


class InstallError(Exception):
    pass


@dataclass(frozen=True)
class Installed:
    python: Path
    seconds: float
    site_mb: float

    @property
    def bin(self) -> Path:
        return self.python.parent


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise InstallError(f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{tail}")
    return done


def constraints(dest: Path) -> Path:
    """The lock's pins as a constraints file (`name==version`, no hashes)."""
    pins = [m.group(0) for line in LOCK.read_text("utf-8").splitlines() if (m := PIN.match(line))]
    dest.write_text("\n".join(pins) + "\n", "utf-8")
    return dest


def make_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def pip_install(python: Path, *requirements: str, constraint: Path | None = None) -> float:
    started = time.perf_counter()
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements]
    if constraint is not None:
        cmd += ["-c", str(constraint)]
    run(cmd)
    return time.perf_counter() - started


def site_packages_mb(python: Path) -> float:
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    total = sum(f.stat().st_size for f in Path(site).rglob("*") if f.is_file() and not f.is_symlink())
    return total / 1e6


def distributions(python: Path) -> set[str]:
    out = run([str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"]).stdout
    return {re.split(r"[=@ ]", line, maxsplit=1)[0].lower().replace("_", "-") for line in out.splitlines() if line}


def pip_check(python: Path) -> str:
    return run([str(python), "-m", "pip", "check", "--disable-pip-version-check"]).stdout


def build(out: Path, tools: Path) -> tuple[Path, Path]:
    """`python -m build` of this repository (sdist, then the wheel from the sdist) with `twine check` on both,
    from a tools venv of their own; returns (sdist, wheel)."""
    py = tools / "bin" / "python"
    if not py.exists():
        make_venv(tools)
        pip_install(py, "build>=1.2", "twine>=5")
    if out.exists():
        shutil.rmtree(out)
    run([str(py), "-m", "build", "--outdir", str(out), str(REPO)])
    sdist = next(out.glob("*.tar.gz"))
    wheel = next(out.glob("*.whl"))
    run([str(py), "-m", "twine", "check", "--strict", str(sdist), str(wheel)])
    return sdist, wheel


def install(wheel: Path, where: Path, extra: str = "", constraint: Path | None = None) -> Installed:
    python = make_venv(where)
    seconds = pip_install(python, f"{wheel}[{extra}]" if extra else str(wheel), constraint=constraint)
    pip_check(python)
    return Installed(python, seconds, site_packages_mb(python))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without its venv, pytest's or MLflow's variables."""
    drop = ("PYTEST_", "MLFLOW_", "VIRTUAL_ENV", "OPENAI_", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))
    env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    return {**env, **extra}
