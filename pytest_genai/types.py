"""Plain data passed between the pipeline, the items and the session (Inspect-style: logs are data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Case:
    """One line of an eval set; fields are attributes so user pipelines read `case.question`."""

    id: str
    question: str
    answers: tuple[str, ...]
    context: str | None = None
    gold_doc_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    expect: Mapping[str, Any] = field(default_factory=dict, hash=False)
    line: int = 0


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Answer:
    """What a pipeline returns; a plain `str` is accepted too and wrapped by the harness."""

    text: str
    contexts: tuple[str, ...] = ()
    usage: Usage = Usage()
    timings: Mapping[str, float] = field(default_factory=dict)
    prompt: str | None = None  # the rendered prompt, kept for failure reports and artifacts
    metadata: Mapping[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None  # set when the pipeline knows better than the wall clock (a replayed answer)


@dataclass(frozen=True)
class CaseResult:
    """Everything measured for one case; travels from xdist workers as a plain dict."""

    id: str
    question: str
    answer: str | None
    answers: tuple[str, ...]
    em: float
    f1: float
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    seed: int
    error: str | None = None
    prompt: str | None = None
    outputs_agree: bool | None = None  # set when --genai-repeat > 1
    expect_failures: tuple[str, ...] = ()
    retrieved: tuple[Mapping[str, Any], ...] = ()  # [{chunk_id, doc_id, score}] in rank order (RAG)
    hit_at_k: float | None = None  # None: not a RAG answer, or the case has no gold_doc_ids
    recall_at_k: float | None = None
    reciprocal_rank: float | None = None
    context_used: bool | None = None  # None: no answer or no retrieved context
    cached: bool | None = None  # served by the response cache (None: the pipeline does not say)
    system_fingerprint: str | None = None
    safety_flags: tuple[str, ...] | None = None  # None: no safety checks ran (no answer, or checks off)
    toxicity: float | None = None
    blocked: bool = False
    critical: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "answers": list(self.answers),
            "em": self.em,
            "f1": self.f1,
            "latency_ms": self.latency_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "seed": self.seed,
            "error": self.error,
            "prompt": self.prompt,
            "outputs_agree": self.outputs_agree,
            "expect_failures": list(self.expect_failures),
            "retrieved": [dict(r) for r in self.retrieved],
            "hit_at_k": self.hit_at_k,
            "recall_at_k": self.recall_at_k,
            "reciprocal_rank": self.reciprocal_rank,
            "context_used": self.context_used,
            "cached": self.cached,
            "system_fingerprint": self.system_fingerprint,
            "safety_flags": None if self.safety_flags is None else list(self.safety_flags),
            "toxicity": self.toxicity,
            "blocked": self.blocked,
            "critical": self.critical,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CaseResult":
        return cls(
            id=d["id"],
            question=d["question"],
            answer=d["answer"],
            answers=tuple(d["answers"]),
            em=d["em"],
            f1=d["f1"],
            latency_ms=d["latency_ms"],
            input_tokens=d["input_tokens"],
            output_tokens=d["output_tokens"],
            cost_usd=d["cost_usd"],
            seed=d["seed"],
            error=d.get("error"),
            prompt=d.get("prompt"),
            outputs_agree=d.get("outputs_agree"),
            expect_failures=tuple(d.get("expect_failures", ())),
            retrieved=tuple(d.get("retrieved", ())),
            hit_at_k=d.get("hit_at_k"),
            recall_at_k=d.get("recall_at_k"),
            reciprocal_rank=d.get("reciprocal_rank"),
            context_used=d.get("context_used"),
            cached=d.get("cached"),
            system_fingerprint=d.get("system_fingerprint"),
            safety_flags=None if d.get("safety_flags") is None else tuple(d["safety_flags"]),
            toxicity=d.get("toxicity"),
            blocked=bool(d.get("blocked", False)),
            critical=bool(d.get("critical", False)),
        )
