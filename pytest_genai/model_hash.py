"""One hash for a model on disk. A folder is hashed whole — weights, config, tokenizer files — because a
change to any of them (e.g. `do_lower_case` in tokenizer_config.json) changes what the model computes.
Used for `rag.embed_model_sha256`, `llm.model_sha256` and the caches keyed by them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Version-control and cache debris that a copy, a checkout or an import may add or drop.
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".cache", ".ipynb_checkpoints"})
SKIP_FILES = frozenset({".gitattributes", ".gitignore", ".DS_Store"})
SKIP_SUFFIXES = (".lock", ".pyc")

FOLDER_COVERS = "sha256 over every file of the folder (relative path and bytes, sorted; .git, __pycache__, *.lock skipped)"
FILE_COVERS = "sha256 of the file's bytes"


class ModelHashError(Exception):
    pass


def model_files(path: Path) -> list[Path]:
    """The files a folder's hash covers, sorted by relative POSIX path (the same order on every OS)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        found += [Path(root) / f for f in files if f not in SKIP_FILES and not f.endswith(SKIP_SUFFIXES)]
    return sorted(found, key=lambda p: p.relative_to(path).as_posix())


def model_sha256(path: Path) -> str:
    """A single file: the plain sha256 of its bytes (what `sha256sum` prints). A folder: sha256 over every
    file, each framed as relative path, size and bytes so that no two different folders hash alike."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise ModelHashError(f"no model file or folder at {path}")
    files = model_files(path)
    if not files:
        raise ModelHashError(f"the model folder {path} has no files")
    h = hashlib.sha256(b"pytest-genai model folder v1\0")
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + str(f.stat().st_size).encode() + b"\0")
        _update(h, f)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """The plain sha256 of a file's bytes (what `sha256sum` prints), read in blocks."""
    return _update(hashlib.sha256(), Path(path)).hexdigest()


def covers(path: Path) -> str:
    """What `model_sha256(path)` is a hash of, for error messages next to a mismatching pin."""
    return FILE_COVERS if Path(path).is_file() else FOLDER_COVERS


def _update(h: "hashlib._Hash", f: Path) -> "hashlib._Hash":
    with f.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h
