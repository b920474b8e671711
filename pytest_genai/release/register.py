"""Register a passed eval: package the pipeline as an MLflow model logged from code, link it to the eval run
(a LoggedModel with the run's metrics), create a model version tagged with every hash and gate verdict, and
point the configured alias at it. Only a full run whose gates passed and whose tracking succeeded registers."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pytest_genai import names
from pytest_genai.release.bundle import BUNDLE_ARTIFACT, BUNDLE_FORMAT, BundleError, package_version, write_bundle

MODEL_CODE = Path(__file__).with_name("model_code.py")
MODEL_NAME_IN_RUN = "model"


class RegistryError(Exception):
    """A registry operation that cannot be done; the message is one line saying why (nothing was moved)."""


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
            return f"the git tree is dirty ({paths}): commit first (or set registry.require_clean_git: false)"
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


def check_registry_store(uri: str | None) -> None:
    """A file store cannot hold a model registry (and MLflow 3 refuses it as a tracking store anyway)."""
    if uri and (uri.startswith("file:") or "://" not in uri):
        raise RegistryError(f"the tracking store {uri} is a file store, which has no model registry: use a database "
                            "(sqlite:///mlflow.db, postgresql://...) or an MLflow server (http://...)")


def pip_requirements(lock_path: Path | None) -> list[str]:
    """The model's environment is the project's lock, pin for pin (never inferred from imports)."""
    from pytest_genai.tracking.envlock import read_lock

    if lock_path is None or not lock_path.is_file():
        raise RegistryError(f"env.lock_file {lock_path} does not exist: a registered model's pip requirements come from "
                            "the project's lock (run `make lock`, or point env.lock_file at it)")
    pins = read_lock(lock_path)
    return [f"{name}=={version}" for name, version in sorted(pins.items())] + [f"pytest-genai=={package_version()}"]


def code_paths(spec: str, lock_pins: Sequence[str]) -> list[str]:
    """A custom pipeline's code travels with the model (its top-level package or module), unless it comes from
    an installed distribution that the lock pins (then the requirements install it)."""
    from importlib.metadata import packages_distributions

    from pytest_genai.tracking.envlock import normalize

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


class _PyfuncFromCode:
    """`mlflow.pyfunc` as the flavor of `Model.log`, minus the in-process serving check of the input example
    (it would load the model a second time: seconds of weights for nothing the tests do not check for real)."""

    __name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(**kwargs: Any) -> Any:
        import mlflow.pyfunc

        kwargs.pop("validate_serving_input", None)
        return mlflow.pyfunc.save_model(**kwargs)


def register_run(*, record: Any, config: Any, prompt: Any, uri: str | None, model_name: str, alias: str,
                 sanitizer: Any, by: str) -> Registered:
    """Log the model to the eval run, create the version, set the alias, record the history. `record` must have
    passed `refusal`. For builtin:rag the index of the run's fingerprint (in the index cache, where the eval's
    workers built or loaded it) is packaged."""
    from pytest_genai.rag.index import index_dir

    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from pytest_genai.release.history import append_history
    from pytest_genai.tracking.mlflow_store import _client, _quiet, in_experiment, use_tracking_uri

    check_registry_store(uri)
    run_id = str(record.tracking.run_id)
    reqs = pip_requirements(config.resolve_path("env.lock_file"))
    paths = code_paths(str(config.get("pipeline")), reqs)
    rag = str(config.get("pipeline")) == "builtin:rag"
    example = [{"question": sanitizer.text(record.results[0].question) if record.results else "What is this model for?"}]
    with _quiet(), tempfile.TemporaryDirectory(prefix="genai-bundle-") as tmp, use_tracking_uri(uri):
        bundle = Path(tmp) / BUNDLE_ARTIFACT
        try:
            fp = record.provenance.index_fingerprint
            info = write_bundle(bundle, config=config, prompt=prompt, index_path=index_dir(fp) if fp else None,
                                record=record)
        except BundleError as exc:
            raise RegistryError(str(exc)) from None
        client = _client(uri)
        with in_experiment(str(client.get_run(run_id).info.experiment_id)):
            model_info = Model.log(
                artifact_path=None, name=MODEL_NAME_IN_RUN, flavor=_PyfuncFromCode, flavor_name="pyfunc.ModelFromCode",
                python_model=str(MODEL_CODE), artifacts={BUNDLE_ARTIFACT: str(bundle)}, code_paths=paths or None,
                pip_requirements=reqs, signature=signature(rag), input_example=example, run_id=run_id,
                metadata={"pytest_genai": info.to_dict()}, validate_serving_input=False,
                tags={names.TAG_EVAL_RUN_ID: run_id, names.TAG_CONFIG_HASH: info.config_hash})
        try:
            client.create_registered_model(model_name, description=f"pytest-genai: {config.get('pipeline')} "
                                                                     f"evaluated on {record.provenance.eval_set_path}")
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        version = client.create_model_version(model_name, model_info.model_uri, run_id=run_id, tags=version_tags(record),
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
