"""`builtin:llm`: render the prompt with the case's context and question, call the LLM."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pytest_genai.llm import LLM
from pytest_genai.prompts import PromptTemplate, render_as_text
from pytest_genai.runtime import Runtime, generation_provenance, make_llm
from pytest_genai.seeding import case_seed
from pytest_genai.types import Answer, Case, Usage


@dataclass
class LLMPipeline:
    llm: LLM
    prompt: PromptTemplate
    seed: int

    @classmethod
    def from_config(cls, config: Any, prompt: PromptTemplate | None, runtime: Runtime | None = None) -> "LLMPipeline":
        if prompt is None:
            raise config.error("prompt", "builtin:llm needs a prompt: set prompt.id and prompt.version")
        return cls(make_llm(config, runtime), prompt, int(config.get("seed")))

    def __call__(self, case: Case) -> Answer:
        messages = self._messages(case)
        started = time.perf_counter()
        gen = self.llm.generate(messages, seed=case_seed(self.seed, case.id))
        return self._answer(case, messages, gen, (time.perf_counter() - started) * 1000)

    def batch(self, cases: list[Case]) -> list[Answer]:
        """One batched generation for several cases (hf_local, llm.batch_size); each case's latency is the batch's."""
        messages = [self._messages(c) for c in cases]
        started = time.perf_counter()
        gens = self.llm.generate_batch(messages, seeds=[case_seed(self.seed, c.id) for c in cases])  # type: ignore[attr-defined]
        llm_ms = (time.perf_counter() - started) * 1000
        return [self._answer(c, m, g, llm_ms, batched=True) for c, m, g in zip(cases, messages, gens)]

    def _messages(self, case: Case) -> list[dict[str, str]]:
        return self.prompt.render({"question": case.question, "context": case.context or "", "case": case})

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
