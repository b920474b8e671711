"""`pipeline:` as one value: a factory, the data files it reads (`artifacts`) and its own settings (`options`).

    pipeline: builtin:llm                             # shorthand for {factory: builtin:llm}
    pipeline: my_pkg.evals:build                      # shorthand for {factory: my_pkg.evals:build}
    pipeline:
      factory: my_pkg.evals:build
      artifacts: [data/capitals.json, data/lexicon]   # files or folders, relative to the config's folder
      options: {greeting: Hello}                      # the pipeline's own settings, read as ctx.options

Declared artifacts are hashed into config_hash (what they contain is part of what was measured) and travel in a
registered model's bundle at the same relative paths, so `ctx.artifact(path)` finds them in the eval and in the
loaded model alike. A shorthand and its mapping without artifacts or options are the same config (same hash).

`options` are checked against the JSON Schema the factory declares (`options_schema`, see pipelines/base.py) at
load, with the other problems: an unknown key gets a did-you-mean among the schema's `properties`, any other
violation names `pipeline.options.<key>` and its line. A factory that declares no schema gets them unchecked."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Mapping

from pytest_genai.config.errors import Problem
from pytest_genai.config.pipeline_options import declared_options_schema
from pytest_genai.config.schema import all_key_paths
from pytest_genai.config.suggest import suggest_key
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
    """`pipeline.artifacts`: relative paths inside the config's folder that exist there (file or folder);
    `pipeline.options`, when written: what the factory's options schema says of them."""
    value = data.get("pipeline") if isinstance(data, dict) else None
    out = _written_options_problems(value, lines, base)
    artifacts = value.get("artifacts") if isinstance(value, dict) else None
    if not isinstance(artifacts, list):
        return out  # absent, or not a list: the schema says so
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


def written_options(value: Any) -> Any:
    """`pipeline.options` as written (`${ENV}` references unresolved): {} when absent."""
    options = value.get("options") if isinstance(value, Mapping) else None
    return {} if options is None else options


def _written_options_problems(value: Any, lines: Lines, base: Path) -> list[Problem]:
    """At load, when `options` is written: the factory is resolved (not built) for the schema it declares. One
    that does not resolve now is not checked here: building it reports why it does not load."""
    if not isinstance(value, dict) or not isinstance(value.get("options"), dict) or not isinstance(value.get("factory"), str):
        return []  # the shorthand, no options (the build checks a required one), or a shape the schema reports
    found, schema = declared_options_schema(value["factory"], base)
    if not found or schema is None:
        return []
    return options_problems(value["factory"], schema, value["options"], lines, "pipeline.factory")


def options_problems(factory: str, schema: Any, options: Any, lines: Lines, factory_key: str = "pipeline.factory") -> list[Problem]:
    """`options` (as written) against the JSON Schema `factory` declares: an unknown key with a did-you-mean
    among the `properties` beside it, any other violation at `pipeline.options.<key path>` and its line."""
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    at = line_of(lines, tuple(factory_key.split(".")))
    try:
        schema = json.loads(json.dumps(schema)) if isinstance(schema, Mapping) else schema  # a copy, plain JSON
    except (TypeError, ValueError) as exc:
        return [Problem(factory_key, f"the options_schema of {factory!r} is not JSON: {exc}", at)]
    if not isinstance(schema, (dict, bool)):
        return [Problem(factory_key, f"the options_schema of {factory!r} must be a JSON Schema (a dict), not "
                                     f"{type(schema).__name__}", at)]
    cls = validator_for(schema) if isinstance(schema, dict) else validator_for({})
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        return [Problem(factory_key, f"the options_schema of {factory!r} is not a valid JSON Schema: {exc.message}", at)]
    out: list[Problem] = []
    option_paths = _option_paths(schema)
    for err in sorted(cls(schema).iter_errors(options), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        path = ("pipeline", "options") + tuple(str(p) for p in err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict) and isinstance(err.schema, dict):
            out += _unknown_options(factory, err.instance, err.schema, path, lines, option_paths)
        else:
            out.append(Problem(".".join(path), err.message, line_of(lines, path)))
    return out


def _unknown_options(factory: str, instance: dict[str, Any], node: dict[str, Any], path: tuple[str, ...], lines: Lines,
                     option_paths: list[str]) -> list[Problem]:
    known = [str(k) for k in node.get("properties") or {}]
    patterns = [str(p) for p in node.get("patternProperties") or {}]
    prefix = ".".join(path)
    if path == ("pipeline", "options"):
        takes = f"the options of {factory!r}: {', '.join(known)}" if known else f"{factory!r} takes no options"
    else:
        takes = f"known under {prefix}: {', '.join(known)}" if known else f"{prefix} takes no keys"
    out: list[Problem] = []
    for key in map(str, instance):
        if key in known or any(re.search(p, key) for p in patterns):
            continue
        dotted = f"{prefix}.{key}"
        hint = _suggest_option(key, known, prefix, option_paths)
        tip = f" — did you mean '{hint}'?" if hint else ""
        out.append(Problem(dotted, f"unknown key '{dotted}'{tip} ({takes})", line_of(lines, path + (key,))))
    return out


def _suggest_option(key: str, known: list[str], prefix: str, option_paths: list[str]) -> str | None:
    """A sibling option first (maxHops -> max_hops, greetng -> greeting), then an option written one level off,
    then what the config's own did-you-mean says (`temperature` -> llm.temperature)."""
    squashed = key.lower().replace("-", "_")
    by_squash = {k.lower().replace("-", "_").replace("_", ""): k for k in known}
    if squashed.replace("_", "") in by_squash:
        return f"{prefix}.{by_squash[squashed.replace('_', '')]}"
    close = difflib.get_close_matches(squashed, known, n=1, cutoff=0.6)
    if close:
        return f"{prefix}.{close[0]}"
    settings = [p for p in all_key_paths() if "." in p]  # a setting elsewhere (llm.temperature), not a section
    return suggest_key(key, (), option_paths + settings, prefix)


def _option_paths(node: Any, prefix: str = OPTIONS_KEY) -> list[str]:
    out: list[str] = []
    for key, sub in (node.get("properties") or {}).items() if isinstance(node, dict) else ():
        out.append(f"{prefix}.{key}")
        out += _option_paths(sub, f"{prefix}.{key}")
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
