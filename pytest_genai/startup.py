"""What a session checks before its first case, so a mistake costs seconds, not a whole eval: the results folder,
the --genai-markdown path, the MLflow store, an unbumped prompt edit against the store, what registering will need,
and the baseline (fetched now). Each refusal is a `StartError` with one clear message; the pytest face turns it into
a usage error. A pipeline that does not build is told by `build_failure`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytest_genai.compare.baseline import BaselineError, check_comparable
from pytest_genai.prompts import unbumped_edit_message
from pytest_genai.sanitize import headline
from pytest_genai.tracking.local import check_results_dir
from pytest_genai.tracking.mlflow_client import check_store
from pytest_genai.tracking.mlflow_store import known_prompt_hashes


class StartError(Exception):
    """The session cannot start; the message says what and how to fix it."""


PACKAGE_DIR = Path(__file__).resolve().parent


def build_failure(exc: BaseException, what: str, sanitizer: Any) -> str:
    """`<what> failed: <reason>`, the pipeline's build failure, and the trace under it: from the first frame outside
    pytest-genai on (the user's factory and what it called; the harness's frames above it are noise), none for a
    TimeoutError the harness raised itself (eval.build_timeout_s: its message says it all). Another error raised
    inside pytest-genai keeps its whole trace."""
    tb = exc.__traceback__
    while tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE_DIR):
        tb = tb.tb_next
    if tb is None and isinstance(exc, TimeoutError):
        return f"{what} failed: {sanitizer.text(f'{type(exc).__name__}: {exc}')}"
    trace = sanitizer.exception(exc.with_traceback(tb) if tb is not None else exc, 8)
    return f"{what} failed: {headline(trace, type(exc).__name__)}\n{trace}"


def check_results_folder(config: Any) -> None:
    root = config.resolve_path("tracking.results_dir")
    assert root is not None
    problem = check_results_dir(root)
    if problem:
        raise StartError(str(config.error("tracking.results_dir", f"cannot write run folders under {root}: {problem}")))


def check_markdown_path(option: str | None, here: Path) -> None:
    """--genai-markdown PATH must be writable before the first case runs, not found out after the last."""
    if not option:
        return
    target = here / option
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders that do not exist yet are created at the end
    why = ("it is a folder" if target.is_dir() else f"{folder} is not a folder" if not folder.is_dir()
           else f"{folder} is not writable" if not os.access(folder, os.W_OK)
           else f"{target} is not writable" if target.exists() and not os.access(target, os.W_OK) else None)
    if why:
        raise StartError(f"--genai-markdown {option}: cannot write {target}: {why}")


def check_tracking_store(uri: str | None, sanitizer: Any) -> None:
    problem = check_store(uri)
    if problem:
        infra = sanitizer.secrets_only()
        where = infra.text(uri or "MLflow's default store")
        fix = "Start it, fix" if (uri or "").startswith(("http://", "https://")) else "Fix"  # a server, or a file
        raise StartError(f"the MLflow tracking store {where} cannot be used: {infra.text(problem)}. {fix} "
                         "tracking.uri / --genai-tracking-uri, or set tracking.enabled: false (results are kept locally)")


def check_prompt_against_store(prompt: Any, uri: str | None, experiment: str, sanitizer: Any) -> str | None:
    """An edit of the prompt without a version bump, against the versions the store has seen: a StartError. An
    unreachable store must not stop local work: the warning is returned (the log step reports the store)."""
    try:
        known = known_prompt_hashes(uri, experiment, prompt.id, prompt.version)
    except Exception as exc:
        return sanitizer.text(f"could not check prompt {prompt.ref} against the tracking store: {type(exc).__name__}: {exc}")
    other = sorted(known - {prompt.hash})
    msg = unbumped_edit_message(prompt, other[0], f"the tracking store ({experiment})") if other else None
    if msg:
        raise StartError(msg)
    return None


def check_registry(config: Any, *, uri: str | None, tracking_enabled: bool, env: Any, git: Any, sanitizer: Any,
                   explicit: bool) -> str | None:
    """Registering is asked for: everything it needs is checked now, not after every case ran. With
    --genai-register (`explicit`) a missing need stops the session; registry.register_on_pass alone (the local loop,
    a dirty tree) only returns why this session will not register."""
    from pytest_genai.release.preflight import check_can_register  # registering only: not loaded otherwise
    from pytest_genai.release.register import RegistryError, check_registry_store

    if not config.get("registry.model_name"):
        raise StartError(str(config.error("registry.model_name", "--genai-register (or registry.register_on_pass) "
                                          "needs the registered model's name: set registry.model_name")))
    if not tracking_enabled:
        raise StartError(str(config.error("tracking.enabled", "is false, but registering needs the eval run logged "
                                          "to MLflow (a version points at its eval run)")))
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    try:
        check_registry_store(uri)
    except RegistryError as exc:
        raise StartError(f"--genai-register: {exc}") from None
    infra = sanitizer.secrets_only()
    try:
        check_can_register(config=config, uri=uri, model_name=str(config.get("registry.model_name")), env=env, git=git)
    except RegistryError as exc:
        if explicit:
            raise StartError(infra.text(f"--genai-register: {exc}; no case was run")) from None
        return infra.text(f"{exc} (checked at session start)")
    return None


def fetch_baseline(ref: str, where: str, *, config: Any, uri: str | None, base_dir: Path, eval_set: Any,
                   intersect: bool, sanitizer: Any) -> Any:
    """The baseline, fetched now: a bad id, an unreachable store or another eval set stops the run before any case
    runs. A models:/ alias that does not exist yet is no baseline (its gates are skipped), not an error."""
    from pytest_genai.tracking.runref import SESSION_URI_OPTION, resolve_baseline  # with a baseline only

    infra = sanitizer.secrets_only()

    def refuse(why: str) -> StartError:
        if where == "compare.baseline":
            return StartError(infra.text(str(config.error("compare.baseline", f"{ref}: {why}"))))
        return StartError(infra.text(f"{where} {ref}: {why}"))

    try:
        baseline = resolve_baseline(ref, uri, base_dir, results_dir=config.resolve_path("tracking.results_dir"),
                                    eval_set_hash=eval_set.sha256, uri_option=SESSION_URI_OPTION)
    except BaselineError as exc:
        raise refuse(str(exc)) from None
    if baseline.record is not None:
        why = check_comparable(baseline.record, eval_set.sha256, [c.id for c in eval_set.cases], intersect=intersect)
        if why:
            raise refuse(why)
    return baseline
