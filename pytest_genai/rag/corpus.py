"""A corpus is a folder or glob of .md/.txt files, or a JSONL of {id, text, title?}."""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = (".md", ".txt")


class CorpusError(Exception):
    pass


@dataclass(frozen=True)
class Document:
    id: str  # a file's path relative to the corpus folder, or the JSONL id
    text: str
    title: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def load_corpus(spec: str, base_dir: Path) -> list[Document]:
    """Documents sorted by id, so the same corpus gives the same chunks in any process."""
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if any(ch in spec for ch in "*?["):
        root = _glob_root(path)
        files = [Path(p) for p in glob.glob(str(path), recursive=True)]
        docs = [_read_file(f, root) for f in files if f.is_file() and f.suffix in TEXT_SUFFIXES]
    elif path.is_dir():
        docs = [_read_file(f, path) for f in path.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES]
    elif path.suffix == ".jsonl" and path.is_file():
        docs = _read_jsonl(path)
    elif path.is_file() and path.suffix in TEXT_SUFFIXES:
        docs = [_read_file(path, path.parent)]
    elif not path.exists():
        raise CorpusError(f"the corpus {path} does not exist")
    else:
        raise CorpusError(f"the corpus {path} is neither a folder, a glob, a .jsonl nor a .md/.txt file")
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise CorpusError(f"the corpus {path} is empty: no non-empty .md/.txt file or JSONL line")
    docs.sort(key=lambda d: d.id)
    return docs


def _glob_root(pattern: Path) -> Path:
    parts = []
    for part in pattern.parts:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return Path(*parts)


def _read_file(path: Path, root: Path) -> Document:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"cannot read corpus file {path}: {exc}") from None
    return Document(id=path.relative_to(root).as_posix(), text=text)


def _read_jsonl(path: Path) -> list[Document]:
    docs: list[Document] = []
    seen: set[str] = set()
    try:
        lines = path.read_text("utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"cannot read corpus file {path}: {exc}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not isinstance(obj.get("text"), str):
            raise CorpusError(f"{path}:{n}: each line needs a string 'id' and a string 'text'")
        if obj["id"] in seen:
            raise CorpusError(f"{path}:{n}: duplicate document id {obj['id']!r}")
        seen.add(obj["id"])
        docs.append(Document(obj["id"], obj["text"], obj.get("title")))
    return docs
