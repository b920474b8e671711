"""What `--genai-register` needs, checked before the first case runs: a session that cannot register stops in
seconds with one reason, instead of after the whole eval. Each check raises `RegistryError` naming the fix in
commands a user's project has (`pytest-genai lock`, `git status`). What only the finished run can tell (a full
selection, passed gates, a logged run, exit status 0, a model that answers) is checked at the end."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pytest_genai.release.register import RegistryError, code_paths, pip_requirements
from pytest_genai.tracking import mlflow_client

MAX_SHOWN = 3  # dirty paths or drifted packages named in the one-line reason


def check_can_register(*, config: Any, uri: str | None, model_name: str, env: Any, git: Any) -> None:
    """Gates, the lock (present, installed as pinned), a clean git tree (unless registry.require_clean_git is
    false), the pipeline's code packageable, the registry reachable (and writable where that can be asked). The
    store's kind (a file store has no registry) is the caller's first check (`check_registry_store`)."""
    if not config.get("gates"):
        raise RegistryError("the config has no gates: a model is registered only through passed gates (add a gates: "
                            "section)")
    check_lock(config.resolve_path("env.lock_file"), env, drift_gated="env_drift" in (config.get("gates") or {}))
    if bool(config.get("registry.require_clean_git", True)):
        check_git(git, config.base_dir)
    check_packageable(config)
    check_registry_access(uri, model_name)


def check_lock(lock_path: Path | None, env: Any, drift_gated: bool = False) -> None:
    """The model's pip requirements are the lock's pins, so the lock must exist and be what ran: every pinned
    package installed at its pinned version. Packages installed but not locked are env drift on the run: refused
    here only when an `env_drift` gate would fail the run at its end anyway (a CI image may carry test-only tools
    the model never imports)."""
    if lock_path is None or not lock_path.is_file():
        raise RegistryError(f"env.lock_file {lock_path} does not exist: a registered model's pip requirements are the "
                            "project's lock: create it with `pytest-genai lock` (or point env.lock_file at yours)")
    differ = [f"{n}: locked {a}, installed {b}" for n, (a, b) in sorted(env.mismatched.items())]
    differ += [f"{n}: locked {v}, not installed" for n, v in sorted(env.missing.items())]
    if drift_gated:  # the env_drift gate counts these too: stop now rather than after the whole eval
        differ += [f"{n}=={v}: installed, not in the lock" for n, v in sorted(env.extra.items())]
    if differ:
        shown = "; ".join(differ[:MAX_SHOWN]) + (f"; ... ({len(differ)} in all)" if len(differ) > MAX_SHOWN else "")
        raise RegistryError(f"the installed packages are not the ones {lock_path.name} pins ({shown}): the model would "
                            f"install other versions than the eval ran with. Install the lock (`pip install -r "
                            f"{lock_path.name}`) or re-lock with `pytest-genai lock --force`")


def check_git(git: Any, folder: Path) -> None:
    if git is None or git.dirty is None:
        raise RegistryError(f"{folder} is not in a git checkout (or git could not tell), so the code cannot be pinned: "
                            "`git init` and commit it, or set registry.require_clean_git: false")
    if git.dirty:
        paths = list(git.dirty_paths)
        more = max(git.dirty_count, len(paths)) - MAX_SHOWN
        shown = ", ".join(paths[:MAX_SHOWN]) + (f" and {more} more" if more > 0 else "")
        raise RegistryError(f"the git tree is dirty ({shown}): commit or stash the changes first (see `git status`), "
                            "or set registry.require_clean_git: false")


def check_packageable(config: Any) -> None:
    """A custom pipeline's code must be found to travel with the model (or come from a locked distribution)."""
    spec = config.pipeline.factory
    base = str(config.base_dir)
    if base not in sys.path:  # as build_pipeline does: a factory next to the config imports like a conftest
        sys.path.insert(0, base)
    reqs = pip_requirements(config.resolve_path("env.lock_file"))
    try:
        code_paths(spec, reqs)
    except RegistryError:
        raise
    except Exception as exc:  # the module does not import: say which, not a traceback
        raise RegistryError(f"the pipeline {spec} cannot be packaged: its module does not import "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def check_registry_access(uri: str | None, model_name: str) -> None:
    """A sqlite store was checked as a file (check_store: writable); any other store is asked once, with no
    retries: the registry answers, and an existing model takes a write that changes nothing (its own
    description), so a read-only user finds out now."""
    if (uri or "").startswith("sqlite:"):
        return

    try:
        with mlflow_client.quiet(), mlflow_client.bounded(0, 30):
            client = mlflow_client.client(uri)
            found = client.search_registered_models(filter_string=f"name = '{model_name}'", max_results=1)
            if found:
                client.update_registered_model(model_name, description=found[0].description or "")
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise RegistryError(f"the model registry at {uri or 'MLflow default store'} cannot be used for {model_name!r}: "
                            f"{type(exc).__name__}: {first}") from None
