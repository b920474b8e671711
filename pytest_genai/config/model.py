"""The resolved config: validated, defaults filled, `${ENV}` secrets resolved but never exposed."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pytest_genai.config.errors import ConfigError, Problem
from pytest_genai.config.validate import SECRET_REF, apply_defaults, schema_problems, semantic_problems, unknown_key_problems
from pytest_genai.config.yaml_lines import Lines, line_of, load_yaml_with_lines


# Sections that say where results (and models) go, what a run is compared with, or how runs are looked at, not
# what is measured: left out of config_hash so the same experiment logged to another server, or compared with another baseline, keeps
# its identity.
UNHASHED_SECTIONS = ("tracking", "registry", "compare", "monitor", "views")


@dataclass(frozen=True)
class GenaiConfig:
    path: Path
    public: Mapping[str, Any]  # secrets kept as their ${NAME} reference
    secrets: Mapping[str, str] = field(repr=False)  # dotted key -> resolved value
    lines: Lines = field(repr=False, default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def get(self, dotted: str, default: Any = None) -> Any:
        """Value at a dotted key; secrets come back resolved (for the code that needs them)."""
        if dotted in self.secrets:
            return self.secrets[dotted]
        node: Any = self.public
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

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
        return hashlib.sha256(canonical_json(hashed).encode()).hexdigest()

    def params(self) -> dict[str, str]:
        """Dotted keys of the resolved config (secrets excluded), as MLflow params."""
        out: dict[str, str] = {}
        _flatten({k: v for k, v in self.public.items() if k != "views"}, "", out, set(self.secrets))  # views: on the experiment
        return out



def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _flatten(node: Any, prefix: str, out: dict[str, str], secret_keys: set[str]) -> None:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out, secret_keys)
    elif prefix and prefix not in secret_keys:
        out[prefix] = node if isinstance(node, str) else json.dumps(node)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> GenaiConfig:
    """Load, validate and resolve a config file; every problem is reported at once."""
    path = Path(path).resolve()
    environ = os.environ if environ is None else environ
    data, lines = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise ConfigError(path, [Problem("", "the top level must be a mapping of sections (version, pipeline, llm, ...)", 1)])
    problems = unknown_key_problems(data, lines)
    problems += schema_problems(data, lines)
    problems += semantic_problems(data, lines)
    secrets: dict[str, str] = {}
    _resolve_secrets(data, (), environ, secrets, problems, lines)
    if problems:
        raise ConfigError(path, sorted(problems, key=lambda p: p.line or 0))
    return GenaiConfig(path, apply_defaults(data), secrets, lines)


def _resolve_secrets(node: Any, prefix: tuple[str, ...], environ: Mapping[str, str], secrets: dict[str, str], problems: list[Problem], lines: Lines) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _resolve_secrets(value, prefix + (str(key),), environ, secrets, problems, lines)
    elif isinstance(node, str) and SECRET_REF.search(node):
        dotted = ".".join(prefix)
        missing = [m.group(1) for m in SECRET_REF.finditer(node) if m.group(1) not in environ]
        if missing:
            problems.append(Problem(dotted, f"environment variable {', '.join(missing)} is not set", line_of(lines, prefix)))
            return
        secrets[dotted] = SECRET_REF.sub(lambda m: environ[m.group(1)], node)
