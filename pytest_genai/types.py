"""Plain data passed between the pipeline, the items and the session (Inspect-style: logs are data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pytest_genai.plain import from_plain, to_plain


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
    retrieved: tuple[Mapping[str, Any], ...] = ()  # [{chunk_id, doc_id, score, rank, used}]: the top-k before the context budget
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

    scores: Mapping[str, float] = field(default_factory=dict)  # registered per-case metrics and hook scores
    metadata: Mapping[str, Any] = field(default_factory=dict)  # what the pipeline put in Answer.metadata (sanitized)
    # when and how long, for the case's MLflow trace: never compared (like latency, they differ run to run)
    started_ms: float | None = None  # epoch ms when the pipeline was called
    timings: Mapping[str, float] = field(default_factory=dict)  # Answer.timings (retrieval_ms, llm_ms, ...) + score_ms
    # with sampled repeats (--genai-repeat N, llm.temperature > 0; pytest_genai/repeats.py): the share of repeats that
    # passed, whether their verdicts disagree, and the detail (n, passed, policy, verdicts, seeds, answers, spread)
    pass_rate: float | None = None
    flip: bool | None = None
    repeats: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CaseResult":
        return from_plain(cls, d)
