"""A faiss index named by its fingerprint: everything that changes retrieval, hashed. Cached on disk
(index + chunks + vectors + manifest) so an unchanged fingerprint loads instead of re-embedding."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from pytest_genai.cache_dir import cache_root
from pytest_genai.rag.chunking import Chunk
from pytest_genai.rag.corpus import Document

FINGERPRINT_SCHEMA = 2  # bump when the chunking or index code changes what it produces (2: whole-folder model hash)


def index_params(spec: Any) -> dict[str, Any]:
    """`flat`, `hnsw`, or {type: hnsw, m, ef_construction, ef_search} -> explicit parameters."""
    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    if spec["type"] == "hnsw":
        return {"type": "hnsw", "m": int(spec.get("m", 32)), "ef_construction": int(spec.get("ef_construction", 200)),
                "ef_search": int(spec.get("ef_search", 64))}
    return {"type": "flat"}


def fingerprint(docs: Sequence[Document], settings: Mapping[str, Any], embed_model: str, embed_sha256: str,
                embed_dim: int, index: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs that change retrieval (and nothing else); their sha256 names the index version.
    `embed_sha256` is `model_sha256` of the whole model folder (weights, config, tokenizer files); the
    transformers and tokenizers versions are in too, since they turn those files into tokens and vectors."""
    from importlib.metadata import version

    import faiss

    inputs = {
        "schema": FINGERPRINT_SCHEMA,
        "corpus": [[d.id, d.sha256] for d in docs],
        "splitter": settings["splitter"],
        "chunk_size": settings["chunk_size"],
        "chunk_overlap": settings["chunk_overlap"],
        "embed_model": embed_model,
        "embed_model_sha256": embed_sha256,
        "embed_dim": embed_dim,
        "index": dict(index),
        "faiss": faiss.__version__,
        "transformers": version("transformers"),
        "tokenizers": version("tokenizers"),
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return {"fingerprint": digest, "version": f"idx-{digest[:12]}", "inputs": inputs}


@dataclass
class VectorIndex:
    fingerprint: str
    version: str
    chunks: list[Chunk]
    vectors: Any  # float32 [n, dim]
    faiss_index: Any
    manifest: dict[str, Any]
    path: Path
    loaded_from_cache: bool

    def search(self, query: Any, k: int) -> tuple[list[int], list[float]]:
        import faiss

        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: waking an OpenMP team costs more than it saves (p95 2x)
        try:
            scores, ids = self.faiss_index.search(query.reshape(1, -1), k)
        finally:
            faiss.omp_set_num_threads(threads)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        return [p[0] for p in pairs], [p[1] for p in pairs]


def index_dir(fp: str) -> Path:
    return cache_root() / "indexes" / fp


def load_index(fp: str) -> VectorIndex | None:
    path = index_dir(fp)
    if not (path / "manifest.json").is_file():
        return None
    return load_index_from(path)


def load_index_from(path: Path) -> VectorIndex:
    """The index files in `path` (the cache's folder for a fingerprint, or a packaged model's copy)."""
    import faiss
    import numpy as np

    manifest = json.loads((path / "manifest.json").read_text("utf-8"))
    chunks = [Chunk(**json.loads(line)) for line in (path / "chunks.jsonl").read_text("utf-8").splitlines()]
    vectors = np.load(path / "vectors.npy")
    index = faiss.read_index(str(path / "index.faiss"))
    _apply_search_params(index, manifest["inputs"]["index"])
    return VectorIndex(manifest["fingerprint"], manifest["version"], chunks, vectors, index, manifest, path, True)


def verify_prebuilt(manifest: Mapping[str, Any], embed_sha256: str, index: Mapping[str, Any]) -> str | None:
    """Why a packaged index does not match what this machine would build from the same corpus (None if it does):
    its manifest must hash to its fingerprint, and its model, library versions and index settings be these."""
    from importlib.metadata import version

    import faiss

    inputs = manifest.get("inputs") or {}
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    if digest != manifest.get("fingerprint"):
        return "its manifest does not hash to its fingerprint (the files were edited)"
    here = {"schema": FINGERPRINT_SCHEMA, "embed_model_sha256": embed_sha256, "index": dict(index),
            "faiss": faiss.__version__, "transformers": version("transformers"), "tokenizers": version("tokenizers")}
    diff = [f"{k} {inputs.get(k)!r} (here {v!r})" for k, v in here.items() if inputs.get(k) != v]
    return "; ".join(diff) or None


def build_index(fp_info: dict[str, Any], chunks: list[Chunk], vectors: Any, embed_seconds: float) -> VectorIndex:
    import faiss
    import numpy as np

    params = fp_info["inputs"]["index"]
    dim = int(vectors.shape[1])
    if params["type"] == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # HNSW insertion order must not depend on thread timing
        try:
            index.add(vectors)
        finally:
            faiss.omp_set_num_threads(threads)
    else:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
    _apply_search_params(index, params)
    fp = fp_info["fingerprint"]
    manifest = {
        "fingerprint": fp, "version": fp_info["version"], "inputs": fp_info["inputs"],
        "chunks": len(chunks), "documents": len({c.doc_id for c in chunks}),
        "vectors_sha256": hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest(),
        "embed_seconds": round(embed_seconds, 3), "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    final = index_dir(fp)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{fp[:12]}-", dir=final.parent))
    try:
        faiss.write_index(index, str(tmp / "index.faiss"))
        np.save(tmp / "vectors.npy", vectors)
        (tmp / "chunks.jsonl").write_text("".join(
            json.dumps({"id": c.id, "doc_id": c.doc_id, "text": c.text, "n_tokens": c.n_tokens}, ensure_ascii=False) + "\n"
            for c in chunks), "utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True), "utf-8")
        try:
            tmp.rename(final)  # atomic: concurrent builders (xdist workers) race harmlessly
        except OSError:
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return VectorIndex(fp, fp_info["version"], chunks, vectors, index, manifest, final, False)


def _apply_search_params(index: Any, params: Mapping[str, Any]) -> None:
    if params.get("type") == "hnsw":
        index.hnsw.efSearch = int(params["ef_search"])
