"""Retrieval metrics on the ranked documents of one case (pure functions)."""

from __future__ import annotations

from typing import Sequence

from pytest_genai.metrics.text import normalize_answer


def ranked_docs(doc_ids: Sequence[str]) -> list[str]:
    """Documents in the order of their best-ranked chunk (several chunks of one doc count once)."""
    seen: dict[str, None] = {}
    for d in doc_ids:
        seen.setdefault(d, None)
    return list(seen)


def hit_at_k(retrieved: Sequence[str], gold: Sequence[str]) -> float:
    return float(any(d in set(gold) for d in retrieved))


def recall_at_k(retrieved: Sequence[str], gold: Sequence[str]) -> float:
    gold_set = set(gold)
    return len(gold_set & set(retrieved)) / len(gold_set) if gold_set else float("nan")


def reciprocal_rank(retrieved: Sequence[str], gold: Sequence[str]) -> float:
    docs = ranked_docs(retrieved)
    gold_set = set(gold)
    return next((1.0 / (i + 1) for i, d in enumerate(docs) if d in gold_set), 0.0)


def context_used(answer: str, contexts: Sequence[str]) -> bool:
    """At least half of the answer's normalised tokens occur in the retrieved context: the answer is
    grounded in what was retrieved rather than made up."""
    tokens = normalize_answer(answer).split()
    if not tokens:
        return False
    context_tokens = set(normalize_answer(" ".join(contexts)).split())
    return sum(t in context_tokens for t in tokens) / len(tokens) >= 0.5
