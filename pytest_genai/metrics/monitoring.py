"""The metrics only monitoring measures, registered in the one metric registry (so `monitor.slo` names, the
terminal table and the MLflow metric names come from the same place as the eval's). They are computed by
`pytest-genai monitor` (monitor/aggregate.py), never by an eval run: an eval gate on one is refused with the reason
below; config/slo.py validates a `monitor.slo` entry."""

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
    """Idempotent; after the built-ins (metrics/__init__.py imports builtin first), so the terminal shows these last."""
    for name, doc, better, unit in MONITOR_METRICS:
        if name not in METRICS:
            add_run_metric(name, doc, lambda rs, f: None, higher_is_better=better, unit=unit, group="monitor",
                           available=MONITOR_ONLY, aggregation={"rate": "rate", "ks": "custom"}.get(unit, "count"))


def is_monitor_metric(name: str) -> bool:
    return any(name == m[0] for m in MONITOR_METRICS)


register()
