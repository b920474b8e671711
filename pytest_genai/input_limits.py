"""Bounds on what a config, a prompt file, a prompt lock and an eval-set line may hold, checked before they are
loaded: YAML aliases that expand without end (a "billion laughs"), nesting deep enough to overflow the recursive
YAML composer or JSON decoder, files and lines too big to be input, bytes that are not UTF-8 (`read_text`). Each is
a clear error naming the file and the line, found in one linear pass (the YAML parser and the scan below are
iterative), not a MemoryError after minutes, a RecursionError or a UnicodeDecodeError. The readers turn it into
their own error type (ConfigError, PromptError, EvalSetError)."""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_DEPTH = 64  # nesting levels of mappings/sequences (YAML) or objects/arrays (JSON); a real config uses < 10
MAX_NODES = 1_000_000  # YAML nodes once every alias is expanded; a real config has < 1,000
MAX_EXPANDED_CHARS = 20_000_000  # YAML scalar text once every alias is expanded (one big string aliased 200 times)
MAX_FILE_BYTES = 5_000_000  # a config, a prompt file, a prompt lock
MAX_LINE_CHARS = 10_000_000  # one eval-set line (one case)

# a JSON string (escapes included), a bracket, or a lone quote (an unterminated string: left to the decoder)
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}"]', re.DOTALL)


class InputLimitError(ValueError):
    """An input over a bound: `str()` is `<file>:<line>: <reason>` (no line for a file's size)."""

    def __init__(self, path: Path | str, reason: str, line: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


def check_size(path: Path | str, limit: int = MAX_FILE_BYTES) -> None:
    """The file's size (stat, before reading it) against `limit`; OSError is the caller's, as a read's would be."""
    size = os.stat(path).st_size
    if size > limit:
        raise InputLimitError(path, f"the file is {size:,} bytes, over the limit of {limit:,} bytes for this input")


def not_a_file(path: Path) -> str:
    """Why `path` is not a file that can be read, said after its name: 'is a folder', 'is a symlink that cannot be
    followed (...)' (a loop, or its target gone), else 'does not exist'."""
    if path.is_dir():
        return "is a folder"
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            return f"is a symlink that cannot be followed ({exc.strerror or exc})"
    return "does not exist"


def read_text(path: Path | str, limit: int = MAX_FILE_BYTES) -> str:
    """A config, a prompt file or a prompt lock as text: its size checked first (check_size), then its bytes decoded
    as UTF-8; bytes that are not UTF-8 are an InputLimitError at their line (was: a UnicodeDecodeError traceback).
    OSError is the caller's, as a read's would be."""
    check_size(path, limit)
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as open() reads
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputLimitError(path, f"not valid UTF-8 ({exc.reason} at byte {exc.start}): save the file as UTF-8",
                              line) from None


def check_yaml(text: str, path: Path | str) -> None:
    """One pass over the parser's events (the parser is iterative; the composer that builds nodes recurses):
    nesting deeper than MAX_DEPTH, or aliases expanding the document beyond MAX_NODES nodes, is an
    InputLimitError at the line where the bound is crossed. Text that is not valid YAML passes: the loader's own
    error says where."""
    import yaml  # as light as the callers: evalset (JSON only) imports this module too

    total = chars = 0  # nodes and scalar characters so far, each alias counted as the node it names
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, characters) of its node, known once the node ends
    open_nodes: list[tuple[str | None, int, int]] = []  # (anchor, totals before it) of each collection not yet ended
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                open_nodes.append((event.anchor, total, chars))
                total += 1
                if len(open_nodes) > MAX_DEPTH:
                    raise InputLimitError(path, f"nested more than {MAX_DEPTH} levels deep "
                                                "(mappings and lists inside each other)", event.start_mark.line + 1)
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, before, before_chars = open_nodes.pop()
                if anchor is not None:
                    sizes[anchor] = (total - before, chars - before_chars)
            elif isinstance(event, yaml.ScalarEvent):
                total += 1
                chars += len(event.value)
                if event.anchor is not None:
                    sizes[event.anchor] = (1, len(event.value))
            elif isinstance(event, yaml.AliasEvent):
                nodes, text = sizes.get(event.anchor, (1, 0))  # an undefined alias: the loader names it
                total += nodes
                chars += text
            else:
                continue
            if total > MAX_NODES:
                raise InputLimitError(path, f"YAML aliases expand the document beyond {MAX_NODES:,} nodes "
                                            "(write the values out, or alias less)", event.start_mark.line + 1)
            if chars > MAX_EXPANDED_CHARS:
                raise InputLimitError(path, f"YAML aliases expand the document beyond {MAX_EXPANDED_CHARS:,} "
                                            "characters of text (write the values out, or alias less)",
                                      event.start_mark.line + 1)
    except yaml.YAMLError:
        return


def check_json(text: str, path: Path | str, line: int | None = None) -> None:
    """Nesting of objects and arrays deeper than MAX_DEPTH (the decoder recurses) is an InputLimitError, at
    `line` (one line of a JSONL file) or at the line of the bracket that crosses the bound. Brackets inside
    strings do not count; text that is not valid JSON passes: the decoder's own error says where."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # cannot be deeper: no scan (most lines)
        return
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > MAX_DEPTH:
                where = line if line is not None else text.count("\n", 0, match.start()) + 1
                raise InputLimitError(path, f"nested more than {MAX_DEPTH} levels deep "
                                            "(objects and arrays inside each other)", where)
        elif token == "]" or token == "}":
            depth -= 1
        elif token == '"':
            return


def check_json_line(text: str, path: Path | str, line: int) -> None:
    """One line of a JSONL file: its length (MAX_LINE_CHARS), then its nesting (check_json)."""
    if len(text) > MAX_LINE_CHARS:
        raise InputLimitError(path, f"the line is {len(text):,} characters long, over the limit of "
                                    f"{MAX_LINE_CHARS:,}", line)
    check_json(text, path, line)
