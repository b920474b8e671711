"""The validation of a `monitor.slo.<metric>: <expression>` entry: the metric registry's names with did-you-mean,
and the gate grammar (monitoring has no baseline and no confidence intervals: thresholds only)."""

from __future__ import annotations

from pytest_genai.config.suggest import suggest_name
from pytest_genai.gates import gate_problem, parse_gate_spec
from pytest_genai.metrics.monitoring import is_monitor_metric
from pytest_genai.metrics.registry import METRICS


def slo_problem(metric: str, expression: object) -> str | None:
    """Why `monitor.slo.<metric>: <expression>` is refused (None: accepted): the metric registry's names with
    did-you-mean, as for `gates:`, and the gate grammar (a list of expressions is accepted too)."""
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
