"""The built-in metrics, registered in the metric registry in the order the terminal shows them.
Errored cases count as wrong answers (EM/F1 0) and in error_rate; latency percentiles are over the
cases that answered; a metric with no data is left out of the run rather than reported as 0."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from pytest_genai.metrics.registry import METRICS, add_run_metric, mean, percentile
from pytest_genai.types import CaseResult

Results = Sequence[CaseResult]
Facts = Mapping[str, float]

PII_TYPES = ("EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET")  # safety.pii.PII_TYPES, kept light here


def _mean_of(get: Callable[[CaseResult], "float | None"], over: Callable[[CaseResult], bool] = lambda r: True):
    def run(results: Results, facts: Facts) -> float | None:
        values = [v for v in (get(r) for r in results if over(r)) if v is not None]
        return mean(values) if values else None
    return run


def _latency(q: float):
    def run(results: Results, facts: Facts) -> float | None:
        values = [r.latency_ms for r in results if r.error is None]
        return percentile(values, q) if results else None
    return run


def _rate(flag: Callable[[CaseResult], bool], over: Callable[[CaseResult], bool]):
    def run(results: Results, facts: Facts) -> float | None:
        pool = [r for r in results if over(r)]
        return sum(flag(r) for r in pool) / len(pool) if pool else None
    return run


def error_share(r: CaseResult) -> float:
    """A case's part of error_rate: 1 when it errored; with sampled repeats, the share of them that errored."""
    n = r.repeats.get("n") if r.repeats else None
    share = float(r.repeats.get("errors") or 0) / n if n else 0.0
    return max(float(r.error is not None), share)


def _repeated(r: CaseResult) -> bool:
    return r.pass_rate is not None


def _checked(r: CaseResult) -> bool:
    return r.safety_flags is not None


# The estimate's errors (pytest_genai/dryrun.py): run metrics set after the run, never aggregated from cases.
TOKENS_INPUT_ESTIMATE_ERROR = "tokens_input_estimate_rel_error"
COST_ESTIMATE_ERROR = "cost_estimate_rel_error"


def _register() -> None:
    if "em" in METRICS:
        return
    add_run_metric("cases_total", "cases in the eval set", lambda rs, f: f.get("cases_total"), unit="cases")
    add_run_metric("cases_evaluated", "cases with a result in this run (errored included)",
                   lambda rs, f: float(len(rs)), unit="cases")
    add_run_metric("em", "exact match after SQuAD normalisation, best over gold answers", _mean_of(lambda r: r.em),
                   higher_is_better=True, group="answer", aggregation="mean")
    add_run_metric("f1", "token F1 after SQuAD normalisation, best over gold answers", _mean_of(lambda r: r.f1),
                   higher_is_better=True, group="answer", aggregation="mean")
    for q in (50, 95, 99):
        add_run_metric(f"latency_p{q}_ms", f"{q}th percentile of case latency (answered cases)", _latency(q),
                       higher_is_better=False, unit="ms", group="latency", aggregation=f"p{q}")
    add_run_metric("tokens_input_total", "prompt tokens over all calls (repeats included)",
                   lambda rs, f: float(sum(r.input_tokens for r in rs)), higher_is_better=False, unit="tokens",
                   group="cost", aggregation="sum")
    add_run_metric("tokens_output_total", "generated tokens over all calls (repeats included)",
                   lambda rs, f: float(sum(r.output_tokens for r in rs)), higher_is_better=False, unit="tokens",
                   group="cost", aggregation="sum")
    add_run_metric("cost_total_usd", "tokens priced by llm.pricing", lambda rs, f: float(sum(r.cost_usd for r in rs)),
                   higher_is_better=False, unit="usd", group="cost", aggregation="sum")
    add_run_metric("cost_per_question_usd", "cost_total_usd / cases_evaluated",
                   lambda rs, f: sum(r.cost_usd for r in rs) / len(rs) if rs else None,
                   higher_is_better=False, unit="usd", group="cost", aggregation="mean")
    add_run_metric("error_rate", "share of cases whose pipeline or scoring failed (with sampled repeats, each case "
                   "counts the share of its repeats that failed)", _mean_of(error_share), higher_is_better=False,
                   unit="rate", aggregation="rate")
    add_run_metric("hit_at_k", "a gold document is among the top rag.retriever_k (cases with gold_doc_ids)",
                   _mean_of(lambda r: r.hit_at_k), higher_is_better=True, group="retrieval", aggregation="mean")
    add_run_metric("recall_at_k", "share of gold documents in the top rag.retriever_k",
                   _mean_of(lambda r: r.recall_at_k), higher_is_better=True, group="retrieval", aggregation="mean")
    add_run_metric("mrr", "mean reciprocal rank of the first gold document", _mean_of(lambda r: r.reciprocal_rank),
                   higher_is_better=True, group="retrieval", aggregation="mean")
    add_run_metric("cases_with_gold_docs", "cases scored for retrieval",
                   lambda rs, f: float(n) if (n := sum(r.hit_at_k is not None for r in rs)) else None,
                   unit="cases", group="retrieval", aggregation="count")
    add_run_metric("context_use_rate", "answers grounded in the retrieved context (half their tokens in it)",
                   _rate(lambda r: bool(r.context_used), lambda r: r.context_used is not None),
                   higher_is_better=True, unit="rate", group="retrieval", aggregation="rate")
    add_run_metric("pii_flag_rate", "answers with a PII or secret finding",
                   _rate(lambda r: any(f in PII_TYPES for f in r.safety_flags or ()), _checked),
                   higher_is_better=False, unit="rate", group="safety", aggregation="rate")
    add_run_metric("toxicity_flag_rate", "answers scored toxic (safety.toxicity.threshold)",
                   _rate(lambda r: "TOXICITY" in (r.safety_flags or ()), lambda r: _checked(r) and r.toxicity is not None),
                   higher_is_better=False, unit="rate", group="safety", aggregation="rate")
    add_run_metric("block_rate", "answers replaced by the refusal (safety.block)",
                   _rate(lambda r: r.blocked, _checked), higher_is_better=False, unit="rate", group="safety",
                   aggregation="rate")
    add_run_metric("safety_critical_count", "answers with a safety.critical flag",
                   lambda rs, f: float(sum(r.critical for r in rs)) if any(_checked(r) for r in rs) else None,
                   higher_is_better=False, unit="cases", group="safety", aggregation="sum")
    add_run_metric("determinism_rate", "cases whose --genai-repeat outputs were identical",
                   _rate(lambda r: bool(r.outputs_agree), lambda r: r.outputs_agree is not None),
                   higher_is_better=True, unit="rate", aggregation="rate")
    # sampled repeats (pytest_genai/repeats.py): per case the share of its N repeats that passed; cases resampled
    add_run_metric("pass_rate", "mean over cases of the share of their --genai-repeat sampled repeats that passed",
                   _mean_of(lambda r: r.pass_rate), higher_is_better=True, unit="rate", group="repeats",
                   aggregation="mean")
    add_run_metric("flip_rate", "cases whose sampled repeats disagree (0 < pass_rate < 1)",
                   _rate(lambda r: bool(r.flip), _repeated), higher_is_better=False, unit="rate", group="repeats",
                   aggregation="rate")
    add_run_metric("pass_at_k", "cases with at least one passing repeat (k = --genai-repeat)",
                   _rate(lambda r: (r.pass_rate or 0) > 0, _repeated), higher_is_better=True, unit="rate",
                   group="repeats", aggregation="rate")
    add_run_metric("pass_all_k", "cases whose k = --genai-repeat repeats all passed",
                   _rate(lambda r: (r.pass_rate or 0) >= 1, _repeated), higher_is_better=True, unit="rate",
                   group="repeats", aggregation="rate")
    add_run_metric("env_drift", "installed packages that differ from the lock (missing, other version, not locked)",
                   lambda rs, f: f.get("env_drift"), higher_is_better=False, unit="packages", aggregation="count")
    add_run_metric("pref_win_rate", "share of paired cases whose answer is preferred over the baseline's (compare.judge: "
                   "F1 by default, the higher F1 against gold wins, a tie counts half; or an LLM judge asked in both "
                   "orders); only with a baseline",
                   lambda rs, f: None, higher_is_better=True, unit="rate", group="comparison")  # set by compare_runs
    add_run_metric(TOKENS_INPUT_ESTIMATE_ERROR, "(estimated - actual) / actual input tokens of the run: the estimate "
                   "made before any call (budget:, --genai-dry-run's figures)", lambda rs, f: None, unit="ratio",
                   group="cost")  # set by dryrun.with_estimate
    add_run_metric(COST_ESTIMATE_ERROR, "(expected - actual) / actual cost_total_usd: the estimate from the baseline's "
                   "mean output tokens, made before any call (budget:)", lambda rs, f: None, unit="ratio", group="cost")


_register()
