"""The metrics only monitoring measures, registered in the one metric registry (so `monitor.slo` names, the
terminal table and the MLflow metric names come from the same place as the eval's), and the validation of a
`monitor.slo` entry. They are computed by `pytest-genai monitor` (monitor/aggregate.py), never by an eval run:
an eval gate on one is refused with the reason below."""

from __future__ import annotations

from pytest_genai.metrics.registry import METRICS, add_run_metric

MONITOR_ONLY = "it is measured on served traffic: gate it in monitor.slo, checked by `pytest-genai monitor`"

# (name, doc, higher_is_better, unit)
MONITOR_METRICS: tuple[tuple[str, str, bool | None, str], ...] = (
    ("requests_total", "requests recorded in the monitoring window", None, "requests"),
    ("retrieval_low_score_rate", "requests whose top retrieval score is below the eval run's 5th percentile",
     False, "rate"),
    ("answer_words_drift_ks", "two-sample KS statistic of answer lengths (words), traffic vs the eval run behind "
     "the version (0: same distribution, 1: disjoint)", False, "ks"),
    ("output_tokens_drift_ks", "two-sample KS statistic of output tokens, traffic vs the eval run behind the version",
     False, "ks"),
    ("feedback_positive_rate", "labelled requests with a thumbs up (--feedback)", True, "rate"),
    ("labelled_total", "requests joined to a feedback label (--feedback)", None, "requests"),
)

# Eval metrics a window of served traffic can compute (the others need gold answers or documents: em and f1
# come back with --feedback).
TRAFFIC_METRICS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "tokens_input_total", "tokens_output_total",
                   "cost_total_usd", "cost_per_question_usd", "error_rate", "pii_flag_rate", "toxicity_flag_rate",
                   "block_rate", "safety_critical_count")
FEEDBACK_METRICS = ("em", "f1")
# Metrics that are a share of requests (or a statistic of them): with no traffic, a gate on one is skipped.
COUNTS = ("requests_total", "labelled_total", "tokens_input_total", "tokens_output_total", "cost_total_usd",
          "safety_critical_count")


def register() -> None:
    """Idempotent; after the built-ins, so the terminal shows these last."""
    import pytest_genai.metrics.builtin  # noqa: F401

    for name, doc, better, unit in MONITOR_METRICS:
        if name not in METRICS:
            add_run_metric(name, doc, lambda rs, f: None, higher_is_better=better, unit=unit, group="monitor",
                           available=MONITOR_ONLY, aggregation={"rate": "rate", "ks": "custom"}.get(unit, "count"))


def is_monitor_metric(name: str) -> bool:
    return any(name == m[0] for m in MONITOR_METRICS)


def slo_problem(metric: str, expression: object) -> str | None:
    """Why `monitor.slo.<metric>: <expression>` is refused (None: accepted): the metric registry's names with
    did-you-mean, as for `gates:`, and the gate grammar (a list of expressions is accepted too)."""
    from pytest_genai.config.suggest import suggest_name
    from pytest_genai.gates import gate_problem, parse_gate_spec

    register()
    known = METRICS.names()
    if metric not in known:
        hint = suggest_name(metric, known)
        tip = f" — did you mean 'monitor.slo.{hint}'?" if hint else ""
        return f"unknown metric '{metric}'{tip} (known: {', '.join(known)})"
    entry = METRICS.get(metric)
    if entry.available is not None and not is_monitor_metric(metric):
        return f"metric '{metric}' cannot be gated yet: {entry.available}"
    for expr in expression if isinstance(expression, list) else [expression]:
        if not isinstance(expr, str) or not expr.strip():
            return f"{expr!r} is not a gate: write it like '<= 1200' (the gate grammar of gates:)"
        why = gate_problem(metric, expr, entry.higher_is_better)
        if why:
            return why
        if parse_gate_spec(expr).kind != "point":
            return f"{expr!r}: monitoring has no baseline and no confidence intervals; write a threshold like '<= 1200'"
    return None


register()
