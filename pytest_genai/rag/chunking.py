"""Chunking measured in tokens of the embedding tokenizer, so a chunk never exceeds what the
embedder reads. Text is cut at token offsets: chunks are exact substrings of the document."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any, Sequence

from pytest_genai.rag.corpus import Document

SPLITTERS = ("recursive", "sentence", "fixed")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_RECURSIVE_SEPARATORS: tuple[re.Pattern[str], ...] = (re.compile(r"\n\s*\n"), re.compile(r"\n"), _SENTENCE_END, re.compile(r"\s+"))


@dataclass(frozen=True)
class Chunk:
    id: str  # "<doc id>#<n>"
    doc_id: str
    text: str
    n_tokens: int


Span = tuple[int, int]  # [start, end) in tokens


def chunk_documents(docs: Sequence[Document], tokenizer: Any, splitter: str, size: int, overlap: int) -> list[Chunk]:
    return [c for d in docs for c in chunk_document(d, tokenizer, splitter, size, overlap)]


def chunk_document(doc: Document, tokenizer: Any, splitter: str, size: int, overlap: int) -> list[Chunk]:
    if not 0 <= overlap < size:
        raise ValueError(f"chunk_overlap ({overlap}) must be >= 0 and smaller than chunk_size ({size})")
    enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    if not offsets:
        return []
    if splitter == "fixed":
        spans = _windows((0, len(offsets)), size, overlap)
    elif splitter == "sentence":
        spans = _pack(_units(doc.text, offsets, (_SENTENCE_END,), size), size, overlap)
    elif splitter == "recursive":
        spans = _pack(_units(doc.text, offsets, _RECURSIVE_SEPARATORS, size), size, overlap)
    else:
        raise ValueError(f"unknown splitter {splitter!r} (known: {', '.join(SPLITTERS)})")
    return [
        Chunk(f"{doc.id}#{i}", doc.id, doc.text[offsets[s][0]:offsets[e - 1][1]], e - s)
        for i, (s, e) in enumerate(spans)
    ]


def _windows(span: Span, size: int, overlap: int) -> list[Span]:
    start, end = span
    out, step = [], size - overlap
    while True:
        out.append((start, min(start + size, end)))
        if start + size >= end:
            return out
        start += step


def _units(text: str, offsets: list[tuple[int, int]], separators: Sequence[re.Pattern[str]], size: int) -> list[Span]:
    """Token spans no longer than `size`, cut at the coarsest separator that makes them fit."""
    starts = [o[0] for o in offsets]

    def tok(char: int) -> int:  # first token starting at or after `char`
        return bisect.bisect_left(starts, char)

    def split(span: Span, level: int) -> list[Span]:
        if span[1] - span[0] <= size:
            return [span] if span[1] > span[0] else []
        if level >= len(separators):
            return _windows(span, size, 0)
        lo, hi = offsets[span[0]][0], offsets[span[1] - 1][1]
        cuts = [tok(m.end()) for m in separators[level].finditer(text, lo, hi)]
        bounds = [span[0]] + [c for c in cuts if span[0] < c < span[1]] + [span[1]]
        if len(bounds) == 2:
            return split(span, level + 1)
        return [u for a, b in zip(bounds, bounds[1:]) for u in split((a, b), level + 1)]

    return split((0, len(offsets)), 0)


def _pack(units: list[Span], size: int, overlap: int) -> list[Span]:
    """Merge consecutive units into chunks of at most `size` tokens; the next chunk starts with the
    trailing units of the previous one that fit in `overlap` tokens."""
    chunks: list[Span] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and total + (units[j][1] - units[j][0]) <= size:
            total += units[j][1] - units[j][0]
            j += 1
        chunks.append((units[i][0], units[j - 1][1]))
        if j >= len(units):
            break
        k, back = j, 0
        while k - 1 > i and back + (units[k - 1][1] - units[k - 1][0]) <= overlap:
            k -= 1
            back += units[k][1] - units[k][0]
        i = k
    return chunks
