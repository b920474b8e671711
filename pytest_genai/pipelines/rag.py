"""`builtin:rag`: retrieve `rag.retriever_k` chunks, keep those that fit `rag.max_context_tokens`, render the
prompt with them and the question, ask the LLM."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from pytest_genai import names
from pytest_genai.llm import LLM
from pytest_genai.llm.base import warm_up
from pytest_genai.pipelines.llm import can_batch
from pytest_genai.prompts import PromptTemplate, render_as_text
from pytest_genai.rag.retrieval import BuildInfo, Hit, Retriever, build_retriever
from pytest_genai.runtime import generation_provenance
from pytest_genai.types import Answer, Case, Usage

WARM_UP_QUERY = "What is this about?"


@dataclass
class RAGPipeline:
    retriever: Retriever
    llm: LLM
    prompt: PromptTemplate
    seed_for: Callable[[Case], int]
    max_context_tokens: int
    build_info: BuildInfo
    concurrent: bool = False  # the provider's declaration; retrieval itself is read-only and thread-safe
    batchable: bool = False

    @classmethod
    def from_context(cls, ctx: Any) -> "RAGPipeline":
        config = ctx.config
        if ctx.prompt is None:
            raise config.error("prompt", "builtin:rag needs a prompt: set prompt.id and prompt.version")
        retriever, info = build_retriever(config, getattr(ctx, "prebuilt_index", None), getattr(ctx, "sanitizer", None))
        return cls(retriever, ctx.llm, ctx.prompt, ctx.seed_for, int(config.get("rag.max_context_tokens")), info,
                   ctx.llm_concurrent, can_batch(ctx))

    def probe_variables(self, case: Case) -> dict[str, Any]:
        """What the prompt sees, with a stand-in context (no retrieval needed to check the template)."""
        return {"question": case.question, "contexts": ["(context)"], "context": "(context)", "case": case}

    def warm_up(self) -> None:
        """At build, before any case is timed: one retrieval (the embedder's and a reranker's first forward pass,
        the index's first search) and the provider's warm-up. Nothing is cached, counted or recorded."""
        self.retriever.retrieve(WARM_UP_QUERY)
        warm_up(self.llm)

    def __call__(self, case: Case, seed: int | None = None) -> Answer:
        hits, used, messages, retrieval_ms = self._prepare(case)
        started = time.perf_counter()
        gen = self.llm.generate(messages, seed=self.seed_for(case) if seed is None else seed)
        return self._answer(hits, used, messages, gen, retrieval_ms, (time.perf_counter() - started) * 1000)

    def batch(self, cases: list[Case], seeds: list[int]) -> list[Answer]:
        """Retrieval per case, then one batched generation (llm.batch_size)."""
        prepared = [self._prepare(c) for c in cases]
        started = time.perf_counter()
        gens = self.llm.generate_batch([p[2] for p in prepared], seeds=list(seeds))  # type: ignore[attr-defined]
        llm_ms = (time.perf_counter() - started) * 1000
        return [self._answer(h, u, m, g, r_ms, llm_ms, batched=True) for (h, u, m, r_ms), g in zip(prepared, gens)]

    def _prepare(self, case: Case) -> tuple[list[Hit], list[Hit], list[dict[str, str]], float]:
        """(top-k hits, the hits that fit the context budget, messages, retrieval ms)."""
        started = time.perf_counter()
        hits = self.retriever.retrieve(case.question)
        used = within_budget(hits, self.max_context_tokens)
        retrieval_ms = (time.perf_counter() - started) * 1000
        contexts = [h.chunk.text for h in used]
        messages = self.prompt.render({
            "question": case.question, "contexts": contexts, "context": "\n\n".join(contexts), "case": case,
        })
        return hits, used, messages, retrieval_ms

    def _answer(self, hits: list[Hit], used: list[Hit], messages: list[dict[str, str]], gen: Any, retrieval_ms: float,
                llm_ms: float, batched: bool = False) -> Answer:
        llm_latency = gen.latency_ms if gen.latency_ms is not None else (llm_ms if batched else None)
        return Answer(
            text=gen.text,
            contexts=tuple(h.chunk.text for h in used),
            usage=Usage(gen.input_tokens, gen.output_tokens),
            timings={"retrieval_ms": retrieval_ms, "llm_ms": llm_ms},
            prompt=render_as_text(messages),
            metadata={"retrieved": retrieved_metadata(hits, used), **generation_provenance(gen)},
            latency_ms=retrieval_ms + llm_latency if llm_latency is not None else None,
        )

    @property
    def index_path(self) -> Any:
        """The folder of the index files (what a packaged model carries)."""
        return self.retriever.index.path

    @property
    def tags(self) -> dict[str, str]:
        idx = self.retriever.index
        return {names.TAG_INDEX_FINGERPRINT: idx.fingerprint, names.TAG_INDEX_VERSION: idx.version,
                "index.cache": "hit" if self.build_info.loaded_from_cache else "built",
                "rag.embed_model_sha256": self.retriever.embedder.sha256}


def within_budget(hits: list[Hit], max_context_tokens: int) -> list[Hit]:
    """Chunks in rank order while they fit in rag.max_context_tokens (always at least the first)."""
    kept, total = [], 0
    for h in hits:
        if kept and total + h.chunk.n_tokens > max_context_tokens:
            break
        kept.append(h)
        total += h.chunk.n_tokens
    return kept


def retrieved_metadata(hits: list[Hit], used: list[Hit]) -> list[dict[str, Any]]:
    """`Answer.metadata["retrieved"]`: the whole top-k in rank order, as ranked before the context budget,
    so that hit_at_k, recall_at_k and mrr measure retrieval; `used` marks the chunks that went into the
    prompt (the budget may drop the tail). `rank` counts from 1."""
    in_prompt = {h.chunk.id for h in used}
    return [{"chunk_id": h.chunk.id, "doc_id": h.chunk.doc_id, "score": round(h.score, 6), "rank": h.rank + 1,
             "used": h.chunk.id in in_prompt} for h in hits]
