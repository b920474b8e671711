"""`pipeline:` as one value: a factory, the data files it reads (`artifacts`) and its own settings (`options`).

    pipeline: builtin:llm                             # shorthand for {factory: builtin:llm}
    pipeline: my_pkg.evals:build                      # shorthand for {factory: my_pkg.evals:build}
    pipeline:
      factory: my_pkg.evals:build
      artifacts: [data/capitals.json, data/lexicon]   # files or folders, relative to the config's folder
      options: {greeting: Hello}                      # the pipeline's own settings, read as ctx.options

Declared artifacts are hashed into config_hash (what they contain is part of what was measured) and travel in a
registered model's bundle at the same relative paths, so `ctx.artifact(path)` finds them in the eval and in the
loaded model alike. A shorthand and its mapping without artifacts or options are the same config (same hash)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Mapping

from pytest_genai.config.errors import Problem
from pytest_genai.config.yaml_lines import Lines, line_of
from pytest_genai.model_hash import file_sha256

ARTIFACTS_KEY = "pipeline.artifacts"
OPTIONS_KEY = "pipeline.options"


@dataclass(frozen=True)
class PipelineSpec:
    """The resolved `pipeline:`: `factory` (builtin:<name>, a registered name or `module:attr`), `artifacts`
    (normalised relative POSIX paths, as declared) and `options` (read-only, secrets resolved)."""

    factory: str
    artifacts: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def builtin(self) -> bool:
        return self.factory.startswith("builtin:")

    def declared(self, path: str | os.PathLike[str]) -> str | None:
        """The declared artifact that covers `path` (itself, or a declared folder it lies in), else None."""
        wanted = normal_path(path)
        if wanted is None:
            return None
        for artifact in self.artifacts:
            if wanted == artifact or PurePosixPath(artifact) in PurePosixPath(wanted).parents:
                return artifact
        return None


def factory_of(value: Any) -> str | None:
    """The factory of a raw `pipeline:` value (string shorthand or mapping), None when it has none."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("factory"), str):
        return value["factory"]
    return None


def spec_of(value: Any, secrets: Mapping[str, str] | None = None) -> PipelineSpec:
    """The spec of a validated `pipeline:` value; `secrets` (dotted key -> resolved value) fill `${ENV}` options."""
    if not isinstance(value, Mapping):
        return PipelineSpec(str(value or ""))
    options = json.loads(json.dumps(value.get("options") or {}))
    for dotted, resolved in (secrets or {}).items():
        if dotted.startswith(OPTIONS_KEY + "."):
            _set(options, dotted[len(OPTIONS_KEY) + 1:].split("."), resolved)
    artifacts = tuple(dict.fromkeys(p for p in map(normal_path, value.get("artifacts") or ()) if p))
    return PipelineSpec(str(value.get("factory") or ""), artifacts, _freeze(options))


def normal_path(path: str | os.PathLike[str]) -> str | None:
    """`./data//x.json` -> `data/x.json`; None for an absolute path, one with `..`, or an empty one."""
    text = os.fspath(path).replace("\\", "/")
    posix = PurePosixPath(text)
    if not text or posix.is_absolute() or ".." in posix.parts or text.startswith("~"):
        return None
    parts = [p for p in posix.parts if p not in ("", ".")]
    return "/".join(parts) or None


def pipeline_problems(data: Any, lines: Lines, base: Path) -> list[Problem]:
    """`pipeline.artifacts`: relative paths inside the config's folder that exist there (file or folder)."""
    value = data.get("pipeline") if isinstance(data, dict) else None
    artifacts = value.get("artifacts") if isinstance(value, dict) else None
    if not isinstance(artifacts, list):
        return []  # absent, or not a list: the schema says so
    out: list[Problem] = []
    for i, raw in enumerate(artifacts):
        if not isinstance(raw, str) or not raw:
            continue
        path = ("pipeline", "artifacts", str(i))
        rel = normal_path(raw)
        if rel is None:
            out.append(Problem(".".join(path), f"{raw!r} must be a path relative to the config's folder that stays "
                                                "inside it (no absolute path, no '..'): what the pipeline reads travels "
                                                "with the model at the same relative path", line_of(lines, path)))
        elif not (base / rel).exists():
            out.append(Problem(".".join(path), f"{raw!r} does not exist (looked for {base / rel}; artifacts are "
                                                "files or folders relative to the config's folder)", line_of(lines, path)))
    return out


def artifact_files(base: Path, artifacts: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(relative POSIX path, file) of every file the declared artifacts hold, in path order (a folder: its files)."""
    found: dict[str, Path] = {}
    for rel in artifacts:
        src = base / rel
        if src.is_dir():
            for file in src.rglob("*"):
                if file.is_file() and "__pycache__" not in file.relative_to(src).parts:
                    found[f"{rel}/{file.relative_to(src).as_posix()}"] = file
        elif src.is_file():
            found[rel] = src
        else:
            raise FileNotFoundError(f"{ARTIFACTS_KEY}: {rel} does not exist under {base}")
    return sorted(found.items())


def artifact_hashes(base: Path, artifacts: tuple[str, ...]) -> dict[str, str]:
    """Relative POSIX path -> sha256 of every file the declared artifacts hold."""
    return {rel: file_sha256(file) for rel, file in artifact_files(base, artifacts)}


def artifacts_digest(hashes: Mapping[str, str]) -> str:
    """One sha256 over the per-file hashes (the `pipeline.artifacts.hash` tag)."""
    return hashlib.sha256(json.dumps(dict(sorted(hashes.items())), separators=(",", ":")).encode()).hexdigest()


def hashed_form(value: Any, hashes: Mapping[str, str]) -> Any:
    """What config_hash sees of `pipeline:`: the factory alone when nothing else is declared (so the shorthand and
    `{factory: ...}` hash alike); else the factory, the options as written and each artifact file's sha256."""
    if not isinstance(value, Mapping):
        return value
    options = value.get("options") or {}
    if not value.get("artifacts") and not options:
        return value.get("factory")
    return {"factory": value.get("factory"), "options": options, "artifacts": dict(sorted(hashes.items()))}


def _freeze(node: Any) -> Any:
    if isinstance(node, dict):
        return MappingProxyType({k: _freeze(v) for k, v in node.items()})
    if isinstance(node, list):
        return tuple(_freeze(v) for v in node)
    return node


def _set(node: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        node = child
    if parts[-1] in node:
        node[parts[-1]] = value
