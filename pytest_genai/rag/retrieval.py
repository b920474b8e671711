"""Retrieval: embed the question, search the index, rerank (none, MMR, or a local cross-encoder)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_genai.model_hash import covers, model_sha256
from pytest_genai.rag.chunking import Chunk, chunk_documents
from pytest_genai.rag.corpus import CorpusError, load_corpus, sanitized
from pytest_genai.rag.embedding import Embedder, EmbeddingError, max_seq_length, model_dim, resolve_embedder
from pytest_genai.rag.index import (
    VectorIndex,
    build_index,
    fingerprint,
    index_params,
    load_index,
    load_index_from,
    verify_prebuilt,
)
from pytest_genai.sanitize import Sanitizer


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    rank: int


def reranker_params(spec: Any) -> dict[str, Any]:
    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    if spec["type"] == "mmr":
        return {"type": "mmr", "lambda": float(spec.get("lambda", 0.5)), "fetch_k": int(spec.get("fetch_k", 20))}
    if spec["type"] == "cross_encoder":
        return {"type": "cross_encoder", "path": str(spec["path"]), "fetch_k": int(spec.get("fetch_k", 20))}
    return {"type": "none"}


@dataclass
class Retriever:
    embedder: Embedder
    index: VectorIndex
    k: int
    reranker: dict[str, Any]
    cross_encoder: Any = None

    def retrieve(self, question: str) -> list[Hit]:
        query = self.embedder.encode([question])[0]
        if self.reranker["type"] == "none":
            ids, scores = self.index.search(query, self.k)
            return [Hit(self.index.chunks[i], s, r) for r, (i, s) in enumerate(zip(ids, scores))]
        fetch = min(max(self.reranker["fetch_k"], self.k), len(self.index.chunks))
        ids, scores = self.index.search(query, fetch)
        if self.reranker["type"] == "mmr":
            picked = mmr(query, self.index.vectors, ids, scores, self.k, self.reranker["lambda"])
            return [Hit(self.index.chunks[i], s, r) for r, (i, s) in enumerate(picked)]
        ranked = self.cross_encoder.rank(question, [(i, self.index.chunks[i].text) for i in ids])[: self.k]
        return [Hit(self.index.chunks[i], s, r) for r, (i, s) in enumerate(ranked)]


def mmr(query: Any, vectors: Any, ids: list[int], scores: list[float], k: int, lam: float) -> list[tuple[int, float]]:
    """Maximal marginal relevance: relevance to the query minus redundancy with what is already picked.
    Returns (chunk index, query similarity) in pick order; ties break by the search order."""
    selected: list[int] = []
    sims = {i: s for i, s in zip(ids, scores)}
    remaining = list(ids)
    while remaining and len(selected) < k:
        best, best_val = remaining[0], float("-inf")
        for i in remaining:
            redundancy = max((float(vectors[i] @ vectors[j]) for j in selected), default=0.0)
            val = lam * sims[i] - (1 - lam) * redundancy
            if val > best_val:
                best, best_val = i, val
        selected.append(best)
        remaining.remove(best)
    return [(i, sims[i]) for i in selected]


@dataclass
class CrossEncoder:
    """A local sequence-classification model (e.g. an ms-marco cross-encoder folder); never downloaded."""

    tokenizer: Any
    model: Any

    @classmethod
    def load(cls, path: str) -> "CrossEncoder":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        model.eval()
        return cls(tok, model)

    def rank(self, question: str, items: list[tuple[int, str]]) -> list[tuple[int, float]]:
        import torch

        enc = self.tokenizer([question] * len(items), [t for _, t in items], padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**enc).logits[:, 0]
        scored = [(i, float(s)) for (i, _), s in zip(items, logits)]
        return sorted(scored, key=lambda p: -p[1])


@dataclass(frozen=True)
class BuildInfo:
    seconds_embedding: float
    loaded_from_cache: bool


def build_retriever(config: Any, prebuilt: Path | None = None, sanitizer: Any = None) -> tuple[Retriever, BuildInfo]:
    """From the `rag:` section; every invalid combination is a ConfigError naming its key. `prebuilt` is the
    index folder a packaged model carries: it is loaded (and checked) instead of reading the corpus. The documents
    pass `sanitizer` (the session's; else one built from `config`) as they are loaded (PII and secrets with
    `safety.redact` on, secrets alone with it off), so the fingerprint, the chunks, the vectors, the cache and a
    packaged copy hold only sanitized text."""
    rag = config.get("rag")
    base = config.base_dir
    if prebuilt is not None:
        return _prebuilt_retriever(config, prebuilt)
    san = sanitizer if sanitizer is not None else Sanitizer.from_config(config)
    try:
        docs = sanitized(load_corpus(rag["corpus"], base), san)
    except CorpusError as exc:
        raise config.error("rag.corpus", str(exc)) from None
    try:
        path = resolve_embedder(rag["embed_model"], base)
    except EmbeddingError as exc:
        raise config.error("rag.embed_model", str(exc)) from None
    dim = model_dim(path)
    if rag["embed_dim"] != dim:
        raise config.error("rag.embed_dim", f"is {rag['embed_dim']} but {rag['embed_model']} produces {dim}-dimensional vectors")
    if rag.get("reranker") not in (None, "none") and reranker_params(rag["reranker"])["type"] == "cross_encoder":
        ce_path = config.resolve_path("rag.reranker.path")
        if ce_path is None or not ce_path.is_dir():
            raise config.error("rag.reranker.path", f"the cross-encoder folder {ce_path} does not exist")
    # Every pin and limit is checked from the files, before the model is loaded: a wrong pin fails in a second.
    sha = _pinned_sha(config, path, "the model changed. Pin the new hash only if the change is intended.")
    max_length = max_seq_length(path)
    if rag["chunk_size"] > max_length - 2:
        raise config.error("rag.chunk_size", f"is {rag['chunk_size']} tokens but {rag['embed_model']} reads at most "
                                            f"{max_length - 2} (plus 2 special tokens): longer chunks would be cut")
    params = index_params(rag["index"])
    fp = fingerprint(docs, rag, rag["embed_model"], sha, dim, params)
    pinned_fp = rag.get("index_fingerprint")
    if pinned_fp and pinned_fp not in (fp["fingerprint"], fp["version"]):
        raise config.error("rag.index_fingerprint", f"the index would be {fp['version']} ({fp['fingerprint']}), not the pinned "
                                                    f"{pinned_fp}: the corpus (as sanitized by safety.redact), the embedding "
                                                    "model's files, a library version or a retrieval setting changed")
    embedder = Embedder.load(rag["embed_model"], base, sha256=sha)
    index = load_index(fp["fingerprint"])
    embed_seconds = 0.0
    if index is None:
        chunks = chunk_documents(docs, embedder.tokenizer, rag["splitter"], rag["chunk_size"], rag["chunk_overlap"])
        started = time.perf_counter()
        vectors = embedder.encode([c.text for c in chunks])
        embed_seconds = time.perf_counter() - started
        index = build_index(fp, chunks, vectors, embed_seconds)
    if rag["retriever_k"] > len(index.chunks):
        raise config.error("rag.retriever_k", f"is {rag['retriever_k']} but the corpus has only {len(index.chunks)} chunks")
    rerank = reranker_params(rag.get("reranker") or "none")
    cross = CrossEncoder.load(str(config.resolve_path("rag.reranker.path"))) if rerank["type"] == "cross_encoder" else None
    return Retriever(embedder, index, rag["retriever_k"], rerank, cross), BuildInfo(embed_seconds, index.loaded_from_cache)



def _pinned_sha(config: Any, path: Path, why: str) -> str:
    """`model_sha256` of the embedder's folder, checked against `rag.embed_model_sha256` when it is pinned."""
    sha = model_sha256(path)
    pinned = config.get("rag.embed_model_sha256")
    if pinned and pinned != sha:
        raise config.error("rag.embed_model_sha256", f"the model at {path} has {covers(path)} {sha}, not the pinned "
                                                     f"{pinned}: {why}")
    return sha


def _prebuilt_retriever(config: Any, folder: Path) -> tuple[Retriever, BuildInfo]:
    """A packaged model's retriever: the embedding model is checked against its pin and against the index's
    manifest (same model files, same transformers/tokenizers/faiss versions), so a query is embedded exactly as
    the chunks were; nothing is re-embedded."""
    rag = config.get("rag")
    try:
        path = resolve_embedder(rag["embed_model"], config.base_dir)
    except EmbeddingError as exc:
        raise config.error("rag.embed_model", str(exc)) from None
    sha = _pinned_sha(config, path, "the model changed since it was packaged")
    index = load_index_from(folder)
    problem = verify_prebuilt(index.manifest, sha, index_params(rag["index"]))
    if problem is None and index.manifest.get("vectors_sha256") != _vectors_sha256(index.vectors):
        problem = "vectors.npy does not match its manifest's vectors_sha256"
    if problem:
        raise config.error("rag.index", f"the packaged index {index.version} cannot be used here: {problem}")
    embedder = Embedder.load(rag["embed_model"], config.base_dir, sha256=sha)
    rerank = reranker_params(rag.get("reranker") or "none")
    cross = CrossEncoder.load(str(config.resolve_path("rag.reranker.path"))) if rerank["type"] == "cross_encoder" else None
    return Retriever(embedder, index, rag["retriever_k"], rerank, cross), BuildInfo(0.0, True)


def _vectors_sha256(vectors: Any) -> str:
    import hashlib

    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest()
