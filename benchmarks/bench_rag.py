"""RAG targets: (1) embedding throughput while building the index >= 90% of the bare model's batched
throughput on the same texts; (2) loading a cached index of 10,000 chunks < 0.5 s, and flat retrieval
for one query p95 < 5 ms; (3) a second build with an unchanged fingerprint embeds nothing."""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _util import REPO, record

N_CHUNKS = 10_000
THROUGHPUT_TEXTS = 2_000
QUERIES = 200
WORDS = ("dome telescope badge leave visitor archive night shift safety grant library parking seminar radio weather "
         "storm lens mirror booking room deadline budget intern data server rota kitchen bus harbour beacon").split()


def synthetic_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 24))) + f" Item {i}." for i in range(n)]


def bare_throughput(texts: list[str], path: Path, batch_size: int) -> float:
    """The bare model: tokenize a batch, forward, mean-pool; no sorting, no bookkeeping."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(texts), batch_size):
            enc = tok(texts[b:b + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            (hidden * mask).sum(1) / mask.sum(1)
    return len(texts) / (time.perf_counter() - started)


def main() -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    import faiss

    from pytest_genai.rag.chunking import Chunk
    from pytest_genai.rag.embedding import Embedder
    from pytest_genai.rag.index import build_index, load_index

    embedder = Embedder.load("all-minilm-l6-v2", REPO)
    texts = synthetic_texts(THROUGHPUT_TEXTS, 1)
    ours, bare = [], []
    for _ in range(3):  # interleaved
        started = time.perf_counter()
        embedder.encode(texts)
        ours.append(len(texts) / (time.perf_counter() - started))
        bare.append(bare_throughput(texts, embedder.path, embedder.batch_size))
    result: dict[str, float] = {
        "embed_ours_texts_per_s": statistics.median(ours), "embed_bare_texts_per_s": statistics.median(bare),
        "embed_ratio": statistics.median(ours) / statistics.median(bare),
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PYTEST_GENAI_CACHE_DIR"] = tmp
        chunk_texts = synthetic_texts(N_CHUNKS, 2)
        started = time.perf_counter()
        vectors = embedder.encode(chunk_texts)
        embed_s = time.perf_counter() - started
        chunks = [Chunk(f"doc{i // 10}.md#{i % 10}", f"doc{i // 10}.md", t, 60) for i, t in enumerate(chunk_texts)]
        fp = {"fingerprint": "b" * 64, "version": "idx-bbbbbbbbbbbb", "inputs": {"index": {"type": "flat"}}}
        build_index(fp, chunks, vectors, embed_s)
        loads = []
        for _ in range(5):
            started = time.perf_counter()
            idx = load_index("b" * 64)
            loads.append(time.perf_counter() - started)
        assert idx is not None and len(idx.chunks) == N_CHUNKS
        queries = [f"Which {random.Random(i).choice(WORDS)} rule applies to the {WORDS[i % len(WORDS)]}?" for i in range(QUERIES)]
        qv = embedder.encode(queries)
        search_ms, end_to_end_ms = [], []
        for q, v in zip(queries, qv):
            started = time.perf_counter()
            idx.search(v, 4)
            search_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            idx.search(embedder.encode([q])[0], 4)
            end_to_end_ms.append((time.perf_counter() - started) * 1000)
    p95 = lambda xs: sorted(xs)[int(0.95 * (len(xs) - 1))]  # noqa: E731
    result.update({
        "index_chunks": N_CHUNKS, "index_embed_s": embed_s,
        "index_load_median_s": statistics.median(loads), "index_load_max_s": max(loads),
        "flat_search_p50_ms": statistics.median(search_ms), "flat_search_p95_ms": p95(search_ms),
        "query_embed_plus_search_p50_ms": statistics.median(end_to_end_ms), "query_embed_plus_search_p95_ms": p95(end_to_end_ms),
        "faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(),
    })
    return result


if __name__ == "__main__":
    json.dump(record("rag", main()), sys.stdout, indent=2)
    print()
