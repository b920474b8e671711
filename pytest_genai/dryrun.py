"""What a run will cost, before any model call: `pytest --genai-config X --genai-dry-run` prints it, and `budget:`
refuses to start a run whose low estimate exceeds a limit.

Input tokens: every prompt is rendered and counted with `llm.tokenizer` (llm/tokens.py). A built-in pipeline
(builtin:llm, builtin:rag) is built and called with a counting stand-in for its model, so the prompts are the ones
a real run sends, retrieval included (it is local); a custom pipeline is not called (it may call its model
itself): its prompt template is rendered with the case (question, context), or without one the question and
context are counted. Output tokens: up to `llm.max_tokens` a call (the high end); the baseline's mean per call when
a baseline run is known (the low and expected figure). Cost from `llm.pricing`; wall time from the baseline's mean
latency per case and the concurrency. Calls: cases x --genai-repeat (a judge's calls are not counted)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

from pytest_genai.context import PipelineContext
from pytest_genai.llm.tokens import counter_for, counter_name
from pytest_genai.metrics.builtin import COST_ESTIMATE_ERROR, TOKENS_INPUT_ESTIMATE_ERROR
from pytest_genai.pipelines import build_pipeline
from pytest_genai.registries import PIPELINES
from pytest_genai.report.terminal import usd
from pytest_genai.runlog import CostEstimate, RunRecord
from pytest_genai.runtime import Runtime
from pytest_genai.types import Case


class BudgetExceeded(Exception):
    """The low estimate is over a `budget:` limit: the run does not start. The message has the figures."""


def _usd(tokens_in: float, tokens_out: float, pricing: tuple[float, float]) -> float:
    return tokens_in / 1000 * pricing[0] + tokens_out / 1000 * pricing[1]


def input_tokens_per_case(session: Any, cases: Sequence[Case]) -> tuple[list[int], str, str]:
    """(input tokens of each case's request, what counted them, how the prompts were obtained)."""
    config = session.config
    counted_by = counter_name(config)
    if config.pipeline.factory in PIPELINES and str(config.pipeline.factory).startswith("builtin:"):
        ctx = PipelineContext(config, session.prompt, Runtime(dry_run=True), session.sanitizer)
        pipeline = build_pipeline(ctx)
        out = []
        for case in cases:
            answer = pipeline(case, session.seed_for(case))
            out.append(int(answer.usage.input_tokens))
        return out, counted_by, f"the prompts {config.pipeline.factory} sends, rendered (no model called)"
    count = counter_for(config)[1]
    out = []
    for case in cases:
        if session.prompt is not None:
            context = case.context or ""
            messages = session.prompt.render({"question": case.question, "context": context,
                                              "contexts": [context] if context else [], "case": case})
        else:
            messages = [{"role": "user", "content": "\n\n".join(x for x in (case.context, case.question) if x)}]
        out.append(count(messages))
    how = ("the prompt template rendered with each case (a custom pipeline is not called)" if session.prompt is not None
           else "each case's question and context (a custom pipeline without a prompt: an approximation)")
    return out, counted_by, how


def baseline_figures(record: RunRecord | None) -> tuple[float | None, float | None]:
    """(mean output tokens per call, mean latency in ms per case) of a baseline run's answered cases."""
    if record is None or not record.results:
        return None, None
    answered = [r for r in record.results if r.error is None]
    if not answered:
        return None, None
    calls = max(1, int(getattr(record.execution, "repeat", 1) or 1))
    out = sum(r.output_tokens for r in answered) / (len(answered) * calls)
    lat = [r.latency_ms for r in answered if isinstance(r.latency_ms, float) and math.isfinite(r.latency_ms)]
    return out, (sum(lat) / len(lat) if lat else None)


def estimate(session: Any, cases: Sequence[Case], *, baseline: RunRecord | None = None,
             baseline_name: str | None = None, concurrency: int = 1) -> CostEstimate:
    per_case, counted_by, method = input_tokens_per_case(session, cases)
    repeat = max(1, int(session.repeat))
    calls = len(cases) * repeat
    tokens_in = sum(per_case) * repeat
    max_tokens = int(session.config.get("llm.max_tokens") or 0)
    pricing = session.pricing
    out_mean, latency_ms = baseline_figures(baseline)
    expected_out = None if out_mean is None else out_mean * calls
    low_out = int(round(expected_out)) if expected_out is not None else 0
    high_out = max_tokens * calls
    return CostEstimate(
        calls=calls, input_tokens=tokens_in, output_tokens_low=min(low_out, high_out), output_tokens_high=high_out,
        cost_usd_low=_usd(tokens_in, min(low_out, high_out), pricing), cost_usd_high=_usd(tokens_in, high_out, pricing),
        output_tokens_expected=expected_out,
        cost_usd_expected=None if expected_out is None else _usd(tokens_in, expected_out, pricing),
        wall_s_expected=None if latency_ms is None else latency_ms * len(cases) * repeat / max(1, concurrency) / 1000,
        counted_by=counted_by, method=method, baseline=baseline_name if baseline is not None else None)


def check_budget(est: CostEstimate, budget: Mapping[str, Any], *, pricing: tuple[float, float] = (1.0, 1.0),
                 cache_mode: str = "off") -> list[str]:
    """Warnings for a high estimate over a limit; BudgetExceeded when the low one is. A replay from the response
    cache calls no model: the budget is not checked then (a fork's replay must not be refused)."""
    over, warnings = [], []
    if not budget:
        return []
    if cache_mode == "replay":
        return ["--genai-cache replay calls no model: nothing is spent, the budget is not checked"]
    if budget.get("max_usd_per_run") is not None and not any(pricing):
        warnings.append("budget.max_usd_per_run cannot be checked: llm.pricing is zero (or absent), so every "
                        "estimate costs $0; set llm.pricing or use budget.max_tokens_per_run")
    limits = (("max_usd_per_run", "cost", est.cost_usd_low, est.cost_usd_high, usd),
              ("max_tokens_per_run", "tokens", est.tokens_low, est.tokens_high, lambda x: f"{int(x):,}"))
    for key, what, low, high, show in limits:
        limit = budget.get(key)
        if limit is None:
            continue
        if low > limit:
            over.append(f"budget.{key} {show(limit)}: the low estimate of the run's {what} is {show(low)} "
                        f"(high {show(high)})")
        elif high > limit:
            warnings.append(f"budget.{key} {show(limit)}: the high estimate of the run's {what} ({show(high)}, every "
                            f"call using llm.max_tokens) exceeds it; the low estimate is {show(low)}")
    if over:
        raise BudgetExceeded("; ".join(over) + f". {est.calls} calls, {est.input_tokens:,} input tokens counted by "
                             f"{est.counted_by}. Nothing was called: raise the budget, or run fewer cases (-k) or a "
                             "cheaper model")
    return warnings


def lines(est: CostEstimate, *, eval_set: str, label: str = "dry run") -> list[str]:
    """The labelled figures, per eval set and in total (one eval set a session: the same figures)."""
    def rng(low: float, high: float, fmt: str) -> str:
        return (fmt.format(low) if low == high else f"{fmt.format(low)}–{fmt.format(high)}")

    body = [f"calls {est.calls:,}", f"input tokens {est.input_tokens:,}",
            f"output tokens {rng(est.output_tokens_low, est.output_tokens_high, '{:,}')}",
            "cost USD " + (usd(est.cost_usd_low) if est.cost_usd_low == est.cost_usd_high
                           else f"{usd(est.cost_usd_low)}–{usd(est.cost_usd_high)}"),
            "wall time " + (f"~{est.wall_s_expected:.1f} s" if est.wall_s_expected is not None else "n/a (no baseline run)")]
    out = [f"{label}: {eval_set}: " + ", ".join(body), f"{label}: total: " + ", ".join(body)]
    if est.baseline:
        out.append(f"{label}: expected: output tokens {est.output_tokens_expected:,.0f}, cost {usd(est.cost_usd_expected or 0.0)} "
                   f"(the mean output tokens per call of {est.baseline})")
    else:
        out.append(f"{label}: no baseline run: output tokens range from 0 to llm.max_tokens a call "
                   "(--genai-baseline or an earlier run of this eval set narrows it)")
    out.append(f"{label}: input tokens counted by {est.counted_by}, from {est.method}")
    return out


def actual_vs_estimate(record: RunRecord, est: CostEstimate) -> dict[str, float]:
    """The estimate's relative errors (estimate - actual) / actual, as run metrics."""
    m = record.metrics
    out: dict[str, float] = {}
    actual_in = m.get("tokens_input_total")
    if actual_in:
        out[TOKENS_INPUT_ESTIMATE_ERROR] = (est.input_tokens - actual_in) / actual_in
    actual_cost = m.get("cost_total_usd")
    if est.cost_usd_expected is not None and actual_cost:
        out[COST_ESTIMATE_ERROR] = (est.cost_usd_expected - actual_cost) / actual_cost
    return out


def with_estimate(record: RunRecord, est: CostEstimate | None) -> RunRecord:
    """The record holding its estimate and, once it has metrics, the estimate's errors."""
    if est is None:
        return record
    return replace(record, estimate=est, metrics={**record.metrics, **actual_vs_estimate(record, est)})
