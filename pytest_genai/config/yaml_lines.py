"""YAML loading that remembers where each key was written, for error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pytest_genai.config.errors import ConfigError, Problem
from pytest_genai.input_limits import InputLimitError, check_yaml, read_text

Lines = dict[tuple[str, ...], int]


def load_yaml_with_lines(path: Path) -> tuple[Any, Lines]:
    """Parse `path`; return the data and a map key-path -> 1-based line. Duplicate keys are errors, and so is
    input over the bounds of input_limits (size, encoding, nesting, alias expansion): checked before the recursive
    composer."""
    try:
        text = read_text(path)  # its size, then its encoding
        check_yaml(text, path)
    except OSError as exc:
        raise ConfigError(path, [Problem("", f"cannot read config: {exc.strerror or exc}")]) from None
    except InputLimitError as exc:
        raise ConfigError(path, [Problem("", exc.reason, exc.line)]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(path, [Problem("", f"not valid YAML: {getattr(exc, 'problem', exc)}", line)]) from None
    if node is None:
        raise ConfigError(path, [Problem("", "the file is empty")])
    lines: Lines = {}
    problems: list[Problem] = []
    _walk(node, (), lines, problems)
    if problems:
        raise ConfigError(path, problems)
    data = yaml.safe_load(text)
    return data, lines


def _walk(node: yaml.Node, prefix: tuple[str, ...], lines: Lines, problems: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = prefix + (key,)
            if key in seen:
                problems.append(Problem(".".join(path), "key given twice", key_node.start_mark.line + 1))
            seen.add(key)
            lines[path] = key_node.start_mark.line + 1
            _walk(value_node, path, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = prefix + (str(i),)
            lines[path] = item.start_mark.line + 1
            _walk(item, path, lines, problems)


def line_of(lines: Lines, path: tuple[str, ...]) -> int | None:
    """Line of `path`, or of its nearest written parent (a missing key is reported at its section)."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None
