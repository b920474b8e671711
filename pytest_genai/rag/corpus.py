"""A corpus is a folder or glob of .md/.txt files, or a JSONL of {id, text, title?}. Its documents are sanitized
(`sanitized`) before anything is chunked, embedded, indexed or cached: PII and secrets with `safety.redact` on,
secrets alone with it off."""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

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


def sanitized(docs: Sequence[Document], sanitizer: Any) -> list[Document]:
    """The documents as the index holds them: id, text and title through the session's sanitizer when
    `safety.redact` is on (placeholders are deterministic, so the same corpus gives the same index), sorted by the
    sanitized id. With it off, secrets are masked all the same (`secrets_only`: an API key in a document never
    reaches the index, its cache or a packaged model) and the corpus keeps its order: without a secret, it is
    indexed as it is (the same fingerprint). Two ids that sanitize to one are an error, not a silent merge."""
    san = sanitizer if sanitizer.redact_pii else sanitizer.secrets_only()
    out = [Document(sanitized_id(d.id, san), san.text(d.text) or "", san.text(d.title)) for d in docs]
    if sanitizer.redact_pii:
        out.sort(key=lambda d: d.id)
    seen: set[str] = set()
    for d in out:
        if d.id in seen:
            raise CorpusError(f"two documents have the id {d.id!r} once sanitized (safety.redact, or a secret "
                              "masked): rename one of them")
        seen.add(d.id)
    return out


def sanitized_id(doc_id: str, sanitizer: Any) -> str:
    """A document id as indexed (and a gold_doc_id mapped the same way to compare with it): PII placeholders with
    `safety.redact` on, a secret masked either way (with it off the sanitizer masks only secrets). A file's .md/.txt
    suffix is set apart first: in `jane@example.com.md` the address is what the detector sees."""
    stem, dot, suffix = doc_id.rpartition(".")
    if stem and f"{dot}{suffix}" in TEXT_SUFFIXES:
        return f"{sanitizer.text(stem) or ''}{dot}{suffix}"
    return sanitizer.text(doc_id) or ""
