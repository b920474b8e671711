"""Run-level aggregates over case results; pure functions, no numpy needed."""

from __future__ import annotations

import math
from typing import Sequence

from pytest_genai.types import CaseResult


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default 'linear' method)."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def aggregate(results: Sequence[CaseResult], cases_total: int) -> dict[str, float]:
    """The core metrics of design.md. Errored cases count as wrong answers (0 EM/F1) and in error_rate."""
    n = len(results)
    ok = [r for r in results if r.error is None]
    latencies = [r.latency_ms for r in ok]
    cost = sum(r.cost_usd for r in results)
    metrics: dict[str, float] = {
        "cases_total": float(cases_total),
        "cases_evaluated": float(n),
        "em": mean([r.em for r in results]),
        "f1": mean([r.f1 for r in results]),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "latency_p99_ms": percentile(latencies, 99),
        "tokens_input_total": float(sum(r.input_tokens for r in results)),
        "tokens_output_total": float(sum(r.output_tokens for r in results)),
        "cost_total_usd": cost,
        "cost_per_question_usd": cost / n if n else float("nan"),
        "error_rate": (n - len(ok)) / n if n else float("nan"),
    }
    with_gold = [r for r in results if r.hit_at_k is not None]
    if with_gold:  # cases without gold_doc_ids are left out of the retrieval metrics (and counted)
        metrics["hit_at_k"] = mean([r.hit_at_k for r in with_gold])  # type: ignore[misc]
        metrics["recall_at_k"] = mean([r.recall_at_k for r in with_gold])  # type: ignore[misc]
        metrics["mrr"] = mean([r.reciprocal_rank for r in with_gold])  # type: ignore[misc]
        metrics["cases_with_gold_docs"] = float(len(with_gold))
    grounded = [r.context_used for r in results if r.context_used is not None]
    if grounded:
        metrics["context_use_rate"] = sum(grounded) / len(grounded)
    checked = [r for r in results if r.safety_flags is not None]
    if checked:
        from pytest_genai.safety.pii import PII_TYPES

        metrics["pii_flag_rate"] = sum(any(f in PII_TYPES for f in r.safety_flags or ()) for r in checked) / len(checked)
        metrics["block_rate"] = sum(r.blocked for r in checked) / len(checked)
        metrics["safety_critical_count"] = float(sum(r.critical for r in checked))
        scored = [r for r in checked if r.toxicity is not None]
        if scored:
            metrics["toxicity_flag_rate"] = sum("TOXICITY" in (r.safety_flags or ()) for r in scored) / len(scored)
    repeated = [r.outputs_agree for r in results if r.outputs_agree is not None]
    if repeated:
        metrics["determinism_rate"] = sum(repeated) / len(repeated)
    return metrics
