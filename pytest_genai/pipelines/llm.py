"""`builtin:llm`: render the prompt with the case's context and question, call the LLM."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from pytest_genai.llm import LLM
from pytest_genai.llm.base import warm_up
from pytest_genai.prompts import PromptTemplate, render_as_text
from pytest_genai.runtime import generation_provenance
from pytest_genai.types import Answer, Case, Usage


@dataclass
class LLMPipeline:
    llm: LLM
    prompt: PromptTemplate
    seed_for: Callable[[Case], int]
    concurrent: bool = False  # the provider's own declaration (thread-safe, seeded per request)
    batchable: bool = False  # the provider batches and decoding is greedy

    @classmethod
    def from_context(cls, ctx: Any) -> "LLMPipeline":
        if ctx.prompt is None:
            raise ctx.config.error("prompt", "builtin:llm needs a prompt: set prompt.id and prompt.version")
        return cls(ctx.llm, ctx.prompt, ctx.seed_for, ctx.llm_concurrent, can_batch(ctx))

    def probe_variables(self, case: Case) -> dict[str, Any]:
        return {"question": case.question, "context": case.context or "", "case": case}

    def warm_up(self) -> None:
        """At build, before any case is timed: the provider's load and first-call costs (not cached, not counted)."""
        warm_up(self.llm)

    def __call__(self, case: Case, seed: int | None = None) -> Answer:
        messages = self._messages(case)
        started = time.perf_counter()
        gen = self.llm.generate(messages, seed=self.seed_for(case) if seed is None else seed)
        return self._answer(case, messages, gen, (time.perf_counter() - started) * 1000)

    def batch(self, cases: list[Case], seeds: list[int]) -> list[Answer]:
        """One batched generation for several cases (llm.batch_size); each case's latency is the batch's."""
        messages = [self._messages(c) for c in cases]
        started = time.perf_counter()
        gens = self.llm.generate_batch(messages, seeds=list(seeds))  # type: ignore[attr-defined]
        llm_ms = (time.perf_counter() - started) * 1000
        return [self._answer(c, m, g, llm_ms, batched=True) for c, m, g in zip(cases, messages, gens)]

    def _messages(self, case: Case) -> list[dict[str, str]]:
        return self.prompt.render(self.probe_variables(case))

    def _answer(self, case: Case, messages: list[dict[str, str]], gen: Any, llm_ms: float, batched: bool = False) -> Answer:
        return Answer(
            text=gen.text,
            contexts=(case.context,) if case.context else (),
            usage=Usage(gen.input_tokens, gen.output_tokens),
            timings={"llm_ms": llm_ms},
            prompt=render_as_text(messages),
            metadata=generation_provenance(gen),
            # the provider's own measure (in replay the recorded one); else the call, or the whole batch
            latency_ms=gen.latency_ms if gen.latency_ms is not None else (llm_ms if batched else None),
        )


def can_batch(ctx: Any) -> bool:
    """Batches only where the provider can (`generate_batch`) and decoding is greedy, so a batch gives
    the answers one-at-a-time calls give (sampling draws from one RNG stream per batch)."""
    return (callable(getattr(ctx.llm, "generate_batch", None)) and float(ctx.config.get("llm.temperature") or 0) == 0
            and int(ctx.config.get("llm.batch_size") or 1) > 1)
