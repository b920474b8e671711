"""Installing pytest-genai into a fresh project, as a stranger would: `python -m build`, then the wheel into fresh
venvs — the core (target: no torch, site-packages <= 400 MB) and `[all]` — and, in the `[all]` venv, the time from
`pytest-genai init` (fetching the default models into empty folders, converting SmolLM2 once) to the end of the
first green `pytest --genai-config genai.yaml`.

Versions come from this repository's lock as pip constraints (pytest_genai/testing/fresh_venv.py); pip's cache is
warm after the first round, so the install times are what a CI machine with a pip cache pays, not a cold download."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from _util import record

from pytest_genai.testing import fresh_venv


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        _, wheel = fresh_venv.build(work / "dist", work / "tools")
        build_s = time.perf_counter() - started
        constraint = fresh_venv.constraints(work / "constraints.txt")
        core = fresh_venv.install(wheel, work / "core", constraint=constraint)
        full = fresh_venv.install(wheel, work / "all", "all", constraint=constraint)
        core_has = fresh_venv.distributions(core.python)
        project = work / "project"
        project.mkdir()
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        env = fresh_venv.clean_env(PYTEST_GENAI_MODELS_DIR=str(work / "models"),
                                   PYTEST_GENAI_CACHE_DIR=str(work / "cache"), HF_HUB_OFFLINE="1")
        started = time.perf_counter()
        fresh_venv.run([str(full.bin / "pytest-genai"), "init"], cwd=project, env=env)
        init_s = time.perf_counter() - started
        fresh_venv.run([str(full.python), "-m", "pytest", "--genai-config", "genai.yaml", "-p", "no:cacheprovider"],
                       cwd=project, env=env)
        first_green_s = time.perf_counter() - started
    return {
        "build_s": build_s,
        "core_install_s": core.seconds, "core_site_packages_mb": core.site_mb,
        "core_has_torch": "torch" in core_has,
        "all_install_s": full.seconds, "all_site_packages_mb": full.site_mb,
        "init_s": init_s, "init_to_first_green_s": first_green_s,
    }


if __name__ == "__main__":
    results = main()
    record("install", results)
    print(results)
