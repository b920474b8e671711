"""Near-duplicate questions by sentence embedding (the RAG extra's embedder: all-MiniLM-L6-v2 by default, offline,
from `pytest-genai install-models`): two questions whose embeddings' cosine is at least `threshold` are one; the
later of the two (in the order given: the most telling stratum first) is dropped. numpy and transformers load here
only when harvest asks for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from pytest_genai import optional
from pytest_genai.rag.embedding import Embedder

DEFAULT_THRESHOLD = 0.92


def available() -> bool:
    """The RAG extra is installed (torch, transformers)."""
    return not optional.missing("rag")


def embedding_filter(model_id: str, base_dir: Path, *, sha256: str | None = None,
                     threshold: float = DEFAULT_THRESHOLD) -> Callable[[Sequence[str], int], list[bool | None]]:
    """(texts, limit) -> for each text in turn, True when its cosine with every text admitted before (in this call
    or an earlier one) is below `threshold` (it is then admitted), False when not, None once `limit` texts were
    admitted in this call. Each text is embedded once (one batch per call for the new ones); the embedder loads on
    first use."""
    loaded: list[Any] = []
    vectors: dict[str, Any] = {}
    admitted: list[Any] = []  # unit vectors

    def admit(texts: Sequence[str], limit: int) -> list[bool | None]:
        import numpy as np

        new = list(dict.fromkeys(t for t in texts if t not in vectors))
        if new:
            if not loaded:
                loaded.append(Embedder.load(model_id, base_dir, sha256=sha256))
            vectors.update(zip(new, np.asarray(loaded[0].encode(new), dtype=np.float32)))  # L2-normalised rows
        out: list[bool | None] = []
        taken = 0
        for text in texts:
            if taken >= limit:
                out.append(None)
                continue
            v = vectors[text]
            if admitted and float(np.max(np.stack(admitted) @ v)) >= threshold:
                out.append(False)
                continue
            admitted.append(v)
            taken += 1
            out.append(True)
        return out

    return admit
