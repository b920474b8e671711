"""Register a passed eval: package the pipeline as an MLflow model logged from code, link it to the eval run
(a LoggedModel with the run's metrics), create a model version tagged with every hash and gate verdict, and
point the configured alias at it. Only a full run whose gates passed and whose tracking succeeded registers, and
only once the packaged model, loaded in a fresh process outside the project, has answered one question (probe.py).
What can be checked before the eval runs is checked then (preflight.py)."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pytest_genai import names
from pytest_genai.config.pipeline_spec import artifacts_digest
from pytest_genai.evalset import load_eval_set
from pytest_genai.rag.index import index_dir
from pytest_genai.release.bundle import BUNDLE_ARTIFACT, BUNDLE_FORMAT, BundleError, package_version, write_bundle
from pytest_genai.release.history import append_history
from pytest_genai.release.probe import ask_in_fresh_process
from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking.envlock import normalize, read_lock
from pytest_genai.tracking.mlflow_client import in_experiment, use_tracking_uri

MODEL_CODE = Path(__file__).with_name("model_code.py")
MODEL_NAME_IN_RUN = "model"


class RegistryError(Exception):
    """A registry operation that cannot be done; the message is one line saying why (nothing was moved)."""


class BundleCheckError(RegistryError):
    """The packaged model did not answer in a fresh process: nothing was logged or registered."""


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    alias: str
    model_id: str
    model_uri: str


def refusal(record: Any, *, require_clean_git: bool) -> str | None:
    """Why this run must not become a model version (None: it may). Checked before anything is written."""
    if record.status != "complete":
        return f"the run is {record.status}, not a full run of the eval set (no -k/-m selection, nothing stopped early)"
    if record.errors:
        return f"the run has errors: {record.errors[0].splitlines()[0]}"
    if not record.gates:
        return "the config has no gates: a model is registered only through passed gates"
    failing = record.failing_gates
    if failing:
        return "gates failed: " + ", ".join(f"{g.metric} {_value(g.value)} (needs {g.expression})" for g in failing)
    if not record.tracking.run_id:
        why = record.tracking.error or "tracking is off"
        return f"the run was not logged to MLflow ({why}); a version must point at its eval run"
    if require_clean_git:
        p = record.provenance
        if p.git_dirty is None:
            return "not a git checkout, so the code cannot be pinned (set registry.require_clean_git: false to allow it)"
        if p.git_dirty:
            paths = ", ".join(p.git_dirty_paths[:3]) + (" ..." if len(p.git_dirty_paths) > 3 else "")
            return (f"the git tree is dirty ({paths}): commit first, see `git status` (or set "
                    "registry.require_clean_git: false)")
    return None


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def verdict(gate: Any) -> str:
    return "skipped" if getattr(gate, "skipped", False) else ("pass" if gate.passed else "FAIL")


def gate_line(gates: Sequence[Any]) -> str:
    """The gate table in one line: the version's description."""
    passed = sum(1 for g in gates if g.passed)
    skipped = sum(1 for g in gates if getattr(g, "skipped", False))
    cells = [f"{g.metric} {_value(g.value)} {g.expression} {verdict(g)}" for g in gates]
    extra = f", {skipped} skipped" if skipped else ""
    return f"gates {passed}/{len(gates) - skipped} passed{extra}: " + " · ".join(cells)


def version_tags(record: Any) -> dict[str, str]:
    """What a model version says about the eval behind it (canonical names, as on the run)."""
    p = record.provenance
    tags = {
        names.TAG_EVAL_RUN_ID: str(record.tracking.run_id),
        names.TAG_BUNDLE_FORMAT: str(BUNDLE_FORMAT),
        names.TAG_PACKAGED_BY: package_version(),
        names.TAG_CONFIG_HASH: p.config_hash,
        names.TAG_EVAL_SET_HASH: p.eval_set_hash,
        names.TAG_ENV_LOCK_HASH: p.env_lock_hash or "none",
        names.TAG_GIT_COMMIT: p.git_commit,
        names.TAG_STATUS: record.status,
        names.TAG_GATES_PASSED: str(record.gates_passed).lower(),
        "pipeline": p.pipeline,
    }
    if p.prompt_id:
        tags[names.TAG_PROMPT_ID] = p.prompt_id
        tags[names.TAG_PROMPT_VERSION] = str(p.prompt_version)
        tags[names.TAG_PROMPT_HASH] = str(p.prompt_hash)
    if p.index_fingerprint:
        tags[names.TAG_INDEX_FINGERPRINT] = p.index_fingerprint
    tags.update({k: str(v) for k, v in p.model_hashes.items()})
    for metric in dict.fromkeys(g.metric for g in record.gates):  # a metric may have several expressions
        mine = [g for g in record.gates if g.metric == metric]
        tags[names.TAG_GATE_PREFIX + metric] = " & ".join(f"{verdict(g)} {_value(g.value)} {g.expression}" for g in mine)
    return tags


def artifact_tags(info: Any) -> dict[str, str]:
    """`pipeline.artifacts.hash`: one sha256 over the packaged artifacts' per-file hashes (each is in bundle.json)."""
    return {names.TAG_PIPELINE_ARTIFACTS_HASH: artifacts_digest(info.artifacts)} if info.artifacts else {}


def check_registry_store(uri: str | None) -> None:
    """A file store cannot hold a model registry (and MLflow 3 refuses it as a tracking store anyway)."""
    if uri and (uri.startswith("file:") or "://" not in uri):
        raise RegistryError(f"the tracking store {uri} is a file store, which has no model registry: use a database "
                            "(sqlite:///mlflow.db, postgresql://...) or an MLflow server (http://...)")


def pip_requirements(lock_path: Path | None) -> list[str]:
    """The model's environment is the project's lock, pin for pin (never inferred from imports)."""
    if lock_path is None or not lock_path.is_file():
        raise RegistryError(f"env.lock_file {lock_path} does not exist: a registered model's pip requirements come from "
                            "the project's lock (create it with `pytest-genai lock`, or point env.lock_file at it)")
    pins = read_lock(lock_path)
    return [f"{name}=={version}" for name, version in sorted(pins.items())] + [f"pytest-genai=={package_version()}"]


def code_paths(spec: str, lock_pins: Sequence[str]) -> list[str]:
    """A custom pipeline's code travels with the model (its top-level package or module), unless it comes from
    an installed distribution that the lock pins (then the requirements install it)."""
    from importlib.metadata import packages_distributions

    if ":" not in spec or spec.startswith("builtin:"):
        return []
    top = spec.split(":", 1)[0].split(".", 1)[0]
    locked = {normalize(p.split("==", 1)[0]) for p in lock_pins}
    if any(normalize(d) in locked for d in packages_distributions().get(top, ())):
        return []
    module = sys.modules.get(top)
    if module is None:
        import importlib

        module = importlib.import_module(top)
    locations = list(getattr(module, "__path__", ()) or ())
    if locations:
        return [str(Path(locations[0]))]
    file = getattr(module, "__file__", None)
    if not file:
        raise RegistryError(f"cannot find the code of {top!r} (pipeline {spec}) to package it")
    return [str(Path(file))]


def signature(rag: bool) -> Any:
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    inputs = Schema([ColSpec(DataType.string, "question"), ColSpec(DataType.string, "context", required=False),
                     ColSpec(DataType.string, "id", required=False)])
    outputs = [ColSpec(DataType.string, "answer", required=False), ColSpec(DataType.string, "request_id"),
               ColSpec(DataType.string, "error", required=False)]  # a failed row: answer null, error its reason
    if rag:
        outputs.append(ColSpec(Array(DataType.string), "retrieved_doc_ids"))
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


def probe_row(config: Any, record: Any) -> dict[str, Any]:
    """The question the packaged model is asked before it is registered: the first case of the eval set that the
    run answered without an error, as the eval asked it (its id, so its seed; its context)."""
    answered = [r.id for r in record.results if r.error is None and r.answer is not None]
    path = config.resolve_path("eval.set")
    cases = list(load_eval_set(path).cases) if path is not None and path.is_file() else []
    by_id = {c.id: c for c in cases}
    case = next((by_id[i] for i in answered if i in by_id), cases[0] if cases else None)
    if case is None:
        return {"question": "What is this model for?"}
    return {"id": case.id, "question": case.question, **({"context": case.context} if case.context else {})}


def check_answers(model_dir: Path, *, config: Any, record: Any, sanitizer: Any) -> None:
    """BundleCheckError unless the saved model answers one eval question in a fresh process, in an empty folder."""
    why = ask_in_fresh_process(model_dir, probe_row(config, record), project_dirs=[config.base_dir, Path.cwd()])
    if why:
        raise BundleCheckError(sanitizer.text(
            f"the packaged model did not answer a question when loaded in a fresh process outside the project folder: "
            f"{why} (a pipeline must find its files in its package or declare them in pipeline.artifacts and read them "
            "with ctx.artifact(path), not from the working directory)"))


class _PyfuncFromCode:
    """`mlflow.pyfunc` as the flavor of `Model.log`, minus MLflow's in-process serving check of the input example:
    the model was already loaded and asked a question in a fresh process (`check_answers`), which also catches
    what an in-process load cannot (the project's folder and modules at hand)."""

    __name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(**kwargs: Any) -> Any:
        import mlflow.pyfunc

        kwargs.pop("validate_serving_input", None)
        return mlflow.pyfunc.save_model(**kwargs)


def register_run(*, record: Any, config: Any, prompt: Any, uri: str | None, model_name: str, alias: str,
                 sanitizer: Any, by: str) -> Registered:
    """Save the model locally and check it answers in a fresh process (BundleCheckError: nothing written), then log
    it to the eval run, create the version, set the alias, record the history. `record` must have passed `refusal`.
    For builtin:rag the index of the run's fingerprint (in the index cache, where the eval's workers built or loaded
    it) is packaged."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    check_registry_store(uri)
    run_id = str(record.tracking.run_id)
    reqs = pip_requirements(config.resolve_path("env.lock_file"))
    paths = code_paths(config.pipeline.factory, reqs)
    rag = config.pipeline.factory == "builtin:rag"
    example = [{"question": sanitizer.text(record.results[0].question) if record.results else "What is this model for?"}]
    with mlflow_client.quiet(), tempfile.TemporaryDirectory(prefix="genai-bundle-") as tmp, use_tracking_uri(uri):
        bundle = Path(tmp) / BUNDLE_ARTIFACT
        try:
            fp = record.provenance.index_fingerprint
            info = write_bundle(bundle, config=config, prompt=prompt, index_path=index_dir(fp) if fp else None,
                                record=record, sanitizer=sanitizer)
        except BundleError as exc:
            raise RegistryError(str(exc)) from None
        probe_dir = Path(tmp) / "probe-model"  # the model as it will be logged, saved locally first: nothing is
        mlflow.pyfunc.save_model(  # written to the store unless it answers
            path=str(probe_dir), python_model=str(MODEL_CODE), artifacts={BUNDLE_ARTIFACT: str(bundle)},
            code_paths=paths or None, pip_requirements=reqs, signature=signature(rag))
        check_answers(probe_dir, config=config, record=record, sanitizer=sanitizer)
        client = mlflow_client.client(uri)
        with in_experiment(str(client.get_run(run_id).info.experiment_id)):
            model_info = Model.log(
                artifact_path=None, name=MODEL_NAME_IN_RUN, flavor=_PyfuncFromCode, flavor_name="pyfunc.ModelFromCode",
                python_model=str(MODEL_CODE), artifacts={BUNDLE_ARTIFACT: str(bundle)}, code_paths=paths or None,
                pip_requirements=reqs, signature=signature(rag), input_example=example, run_id=run_id,
                metadata={"pytest_genai": info.to_dict()}, validate_serving_input=False,
                tags={names.TAG_EVAL_RUN_ID: run_id, names.TAG_CONFIG_HASH: info.config_hash, **artifact_tags(info)})
        try:
            client.create_registered_model(model_name, description=f"pytest-genai: {config.pipeline.factory} "
                                                                     f"evaluated on {record.provenance.eval_set_path}")
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        version = client.create_model_version(model_name, model_info.model_uri, run_id=run_id,
                                              tags={**version_tags(record), **artifact_tags(info)},
                                              description=gate_line(record.gates), model_id=model_info.model_id)
        previous = _alias_version(client, model_name, alias)
        try:
            client.set_registered_model_alias(model_name, alias, version.version)
        except Exception:  # a version nobody points at is half a release: take it back
            client.delete_model_version(model_name, version.version)
            raise
        append_history(client, model_name, {"alias": alias, "version": str(version.version), "previous": previous,
                                            "action": "register", "by": by, "reason": f"eval run {run_id}"})
        client.set_tag(run_id, names.TAG_REGISTERED, f"{model_name}/{version.version}@{alias}")
    return Registered(model_name, str(version.version), alias, model_info.model_id, model_info.model_uri)


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None
