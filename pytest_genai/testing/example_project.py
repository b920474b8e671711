"""A copy of the bundled RAG example on its first few questions, in its own clean git checkout: what the release
test and the release benchmark both run (the repository's corpus, prompts, lock and config, smaller gates)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from pytest_genai.lock_cmd import lock_text

REPO = Path(__file__).resolve().parents[2]
GATES = {"hit_at_k": ">= 0.9", "error_rate": "== 0", "latency_p95_ms": "<= 600000"}


def write_env_lock(dest: Path) -> Path:
    """A lock of the running environment (what `pytest-genai lock` writes): a project's lock that matches the env
    the test runs in, be it this repository's pinned one or the floors' (`make test-floors`)."""
    dest.write_text(lock_text(dest.name)[0], "utf-8")
    return dest


def git(path: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", *args], cwd=path, check=True,
                   capture_output=True)


def copy_example(dest: Path, *, model_name: str, cases: int = 4, batch_size: int = 2, experiment: str = "release") -> Path:
    """Write the project into `dest` (committed: `require_clean_git` holds) and return its config path. The env
    gate is left out: this venv may carry test-only packages the lock does not list."""
    for name in ("corpus", "prompts"):
        shutil.copytree(REPO / name, dest / name)
    write_env_lock(dest / "requirements.lock")
    (dest / "eval_sets").mkdir()
    lines = (REPO / "eval_sets" / "handbook.jsonl").read_text("utf-8").splitlines()[:cases]
    (dest / "eval_sets" / "handbook.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    cfg = yaml.safe_load((REPO / "genai.yaml").read_text("utf-8"))
    cfg["llm"]["batch_size"] = batch_size
    cfg["gates"] = dict(GATES)
    cfg["tracking"] = {"experiment": experiment}
    cfg["registry"] = {"model_name": model_name}
    (dest / "genai.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), "utf-8")
    (dest / ".gitignore").write_text(".pytest-genai/\nmlflow.db\nmlruns/\nmlartifacts/\n", "utf-8")
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "example")
    return dest / "genai.yaml"
