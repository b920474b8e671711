"""The resolved config: validated, defaults filled, `${ENV}` secrets resolved but never exposed.

A reference under `llm.` (or `compare.judge.llm.`) whose variable is not set is no error at load: it is needed
only when a provider is called, and a replay (`--genai-cache replay`: a fork's CI, no secrets) calls none. Reading
it (`get`) raises then, naming the key and the variable. Any other unset reference is an error at load."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from pytest_genai.config.errors import ConfigError, Problem
from pytest_genai.config.pipeline_spec import (
    ARTIFACTS_KEY,
    PipelineSpec,
    artifact_hashes,
    hashed_form,
    normal_path,
    pipeline_problems,
    spec_of,
)
from pytest_genai.config.validate import (
    SECRET_REF,
    apply_defaults,
    schema_problems,
    semantic_problems,
    unknown_key_problems,
)
from pytest_genai.config.yaml_lines import Lines, line_of, load_yaml_with_lines

# Sections that say where results (and models) go, what a run is compared with, or how runs are looked at, not
# what is measured: left out of config_hash so the same experiment logged to another server, or compared with another baseline, keeps
# its identity.
UNHASHED_SECTIONS = ("tracking", "registry", "compare", "monitor", "views", "budget")
REDACT_KEY = "safety.redact_key"  # its ${ENV} must not resolve to "" (the sanitizer would refuse it at session start)


@dataclass(frozen=True)
class GenaiConfig:
    path: Path
    public: Mapping[str, Any]  # secrets kept as their ${NAME} reference
    secrets: Mapping[str, str] = field(repr=False)  # dotted key -> resolved value
    lines: Lines = field(repr=False, default_factory=dict)
    artifact_root: Path | None = field(default=None, repr=False)  # where pipeline.artifacts are (default: base_dir)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @cached_property
    def pipeline(self) -> PipelineSpec:
        """`pipeline:` in either form: factory, artifacts, options (read this, never `get("pipeline")`)."""
        return spec_of(self.public.get("pipeline"), self.secrets)

    @property
    def factory_key(self) -> str:
        """Where the factory is written (what an error about it names): `pipeline` or `pipeline.factory`."""
        return "pipeline.factory" if isinstance(self.public.get("pipeline"), Mapping) else "pipeline"

    @property
    def artifact_dir(self) -> Path:
        return self.artifact_root or self.base_dir

    @cached_property
    def artifact_hashes(self) -> dict[str, str]:
        """Relative path -> sha256 of each file of pipeline.artifacts, read once (the hash measured is the one kept)."""
        return artifact_hashes(self.artifact_dir, self.pipeline.artifacts)

    def artifact(self, path: str | os.PathLike[str]) -> Path:
        """A declared artifact's path (relative to the config's folder, or to a model bundle's); an undeclared path
        is a ConfigError naming pipeline.artifacts: only declared files are hashed and travel with the model."""
        spec = self.pipeline
        if spec.declared(path) is None:
            declared = ", ".join(spec.artifacts) or "none"
            raise self.error(ARTIFACTS_KEY, f"{os.fspath(path)!r} is not declared in {ARTIFACTS_KEY} (declared: {declared}): "
                             "add it there, so that it is hashed into config_hash and packaged with a registered model")
        return self.artifact_dir / str(normal_path(path))

    def get(self, dotted: str, default: Any = None) -> Any:
        """Value at a dotted key; secrets come back resolved (for the code that needs them)."""
        if dotted in self.secrets:
            return self.secrets[dotted]
        node: Any = self.public
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        if isinstance(node, str) and SECRET_REF.search(node):  # a reference no variable resolved: never its text
            raise self.error(dotted, unset_message(node))
        return node

    @property
    def secret_keys(self) -> frozenset[str]:
        """Dotted keys given as `${ENV}` references, resolved or not: kept out of params and cache keys."""
        return frozenset(self.secrets) | frozenset(self.unresolved)

    @property
    def unresolved(self) -> dict[str, tuple[str, ...]]:
        """Dotted key -> the variables of its reference that were not set at load (needed only if it is read)."""
        out: dict[str, tuple[str, ...]] = {}
        _references(self.public, "", set(self.secrets), out)
        return out

    def resolve_path(self, dotted: str) -> Path | None:
        value = self.get(dotted)
        if value is None:
            return None
        p = Path(os.path.expanduser(str(value)))
        return p if p.is_absolute() else (self.base_dir / p)

    def line(self, dotted: str) -> int | None:
        return line_of(self.lines, tuple(dotted.split(".")))

    def error(self, dotted: str, message: str) -> ConfigError:
        return ConfigError(self.path, [Problem(dotted, message, self.line(dotted))])

    @property
    def hash(self) -> str:
        hashed = {k: v for k, v in self.public.items() if k not in UNHASHED_SECTIONS}
        if "pipeline" in hashed:  # its data files by content; the shorthand and {factory: ...} alike
            hashed["pipeline"] = hashed_form(hashed["pipeline"], self.artifact_hashes)
        return hashlib.sha256(canonical_json(hashed).encode()).hexdigest()

    def params(self) -> dict[str, str]:
        """Dotted keys of the resolved config (secrets excluded), as MLflow params."""
        out: dict[str, str] = {}
        data = {k: v for k, v in self.public.items() if k != "views"}  # views: on the experiment
        if isinstance(data.get("pipeline"), Mapping):  # `pipeline` is the factory in either form
            mapping = data["pipeline"]
            data["pipeline"] = self.pipeline.factory
            data.update({f"pipeline.{k}": mapping[k] for k in ("artifacts", "options") if mapping.get(k)})
        _flatten(data, "", out, set(self.secret_keys))
        return out



def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _flatten(node: Any, prefix: str, out: dict[str, str], secret_keys: set[str]) -> None:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out, secret_keys)
    elif prefix and prefix not in secret_keys:
        out[prefix] = node if isinstance(node, str) else json.dumps(node)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
                artifact_root: Path | None = None) -> GenaiConfig:
    """Load, validate and resolve a config file; every problem is reported at once. `artifact_root`: where
    pipeline.artifacts are when not beside the config (a run folder's copy of the config, read for its project)."""
    try:
        path = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError on 3.11): reading the file says so, naming it
        path = Path(os.path.abspath(path))
    environ = os.environ if environ is None else environ
    data, lines = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise ConfigError(path, [Problem("", "the top level must be a mapping of sections (version, pipeline, llm, ...)", 1)])
    problems = unknown_key_problems(data, lines)
    problems += schema_problems(data, lines)
    problems += semantic_problems(data, lines)
    problems += pipeline_problems(data, lines, artifact_root or path.parent)
    secrets: dict[str, str] = {}
    _resolve_secrets(data, (), environ, secrets, problems, lines)
    real_env = not getattr(environ, "resolves_any", False)  # reproduce's stand-in resolves every name to ""
    if real_env and secrets.get(REDACT_KEY) == "":  # keyed placeholders with an empty key: refused at load
        names = ", ".join(m.group(1) for m in SECRET_REF.finditer(str(data["safety"]["redact_key"])))
        problems.append(Problem(REDACT_KEY, f"the environment variable it names ({names}) is empty: set it to the "
                                            "redaction key", line_of(lines, tuple(REDACT_KEY.split(".")))))
    if problems:
        raise ConfigError(path, sorted(problems, key=lambda p: p.line or 0))
    return GenaiConfig(path, apply_defaults(data), secrets, lines, artifact_root)


# Where an unset variable waits until the value is read: what only a provider call needs.
DEFERRED_SECTIONS = (("llm",), ("compare", "judge", "llm"))


def unset_message(reference: str) -> str:
    """Why an unresolved reference cannot be read: names its variable(s), never a value (there is none)."""
    names = ", ".join(dict.fromkeys(m.group(1) for m in SECRET_REF.finditer(reference)))
    return (f"environment variable {names} is not set, and it is needed now: a model is about to be called "
            f"(export {names.split(', ')[0]}=...). A run without secrets (a fork's CI) replays recorded answers "
            "instead: --genai-cache replay, from a response cache or a --genai-cassette recorded with the key")


def _resolve_secrets(node: Any, prefix: tuple[str, ...], environ: Mapping[str, str], secrets: dict[str, str], problems: list[Problem], lines: Lines) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _resolve_secrets(value, prefix + (str(key),), environ, secrets, problems, lines)
    elif isinstance(node, str) and SECRET_REF.search(node):
        dotted = ".".join(prefix)
        missing = [m.group(1) for m in SECRET_REF.finditer(node) if m.group(1) not in environ]
        if missing:
            if not any(prefix[:len(s)] == s and len(prefix) > len(s) for s in DEFERRED_SECTIONS):
                problems.append(Problem(dotted, f"environment variable {', '.join(missing)} is not set", line_of(lines, prefix)))
            return  # deferred: left as its reference in `public`, and `get` raises if anything reads it
        secrets[dotted] = SECRET_REF.sub(lambda m: environ[m.group(1)], node)


def _references(node: Any, prefix: str, resolved: set[str], out: dict[str, tuple[str, ...]]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            _references(value, f"{prefix}.{key}" if prefix else str(key), resolved, out)
    elif isinstance(node, str) and prefix not in resolved and SECRET_REF.search(node):
        out[prefix] = tuple(dict.fromkeys(m.group(1) for m in SECRET_REF.finditer(node)))
