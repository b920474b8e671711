"""The end-of-session table: metric, value, gate, verdict, and where the run went."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if float(value).is_integer() and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.3e}"


def write_summary(tr: Any, plugin: Any) -> None:
    tr.section("pytest-genai", sep="=", bold=True)
    env = plugin.env
    if env is not None and env.drift:
        tr.write_line(f"env drift: {env.drift} package(s) differ from {env.lock_path.name}:", yellow=True)
        for line in env.lines()[:20]:
            tr.write_line(f"  {line}", yellow=True)
    if env is not None and env.lock_hash is None:
        tr.write_line(f"env: lock file {env.wanted} not found: env_drift is not computed (a gate on it fails)", yellow=True)
    if plugin.prompt_check_error:
        tr.write_line(f"warning: {plugin.prompt_check_error}", yellow=True)
    summary = plugin.summary
    if summary is None:
        tr.write_line("no case ran; nothing was logged")
        return
    gates = {g.metric: g for g in summary.gates}
    rows = [("metric", "value", "gate", "result")]
    shown = [m for m in summary.metrics if m in gates or m not in ("cases_total", "cases_evaluated")]
    for metric in ["cases_total", "cases_evaluated"] + shown + [m for m in gates if m not in summary.metrics]:
        g = gates.get(metric)
        verdict = "" if g is None else ("pass" if g.passed else ("FAIL" if summary.enforced else "fail (not enforced)"))
        if g is not None and g.reason:
            verdict += f" ({g.reason})"
        rows.append((metric, fmt(summary.metrics.get(metric)), g.expression.strip() if g else "", verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        line = "  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip()
        failed = row[3].startswith("FAIL")
        tr.write_line(line, bold=i == 0, red=failed, green=row[3] == "pass")
    if summary.partial:
        note = "enforced (--genai-enforce-gates)" if summary.enforced else "NOT enforced"
        tr.write_line(f"partial run: {int(summary.metrics['cases_evaluated'])} of {int(summary.metrics['cases_total'])} cases; gates {note}; tagged genai.partial=true", yellow=True)
    if plugin.local_error:
        tr.write_line(f"LOCAL RESULTS FAILED: {plugin.local_error}; nothing was sent to MLflow", red=True, bold=True)
    else:
        tr.write_line(f"local results: {plugin.run_dir}")
    if plugin.run_id:
        uri = plugin.state.config.redact(plugin.tracking_uri) or "MLflow default"
        tr.write_line(f"mlflow run: {plugin.run_id} (experiment {plugin.experiment!r}, tracking uri {uri})")
    elif plugin.tracking_error:
        tr.write_line(
            f"TRACKING FAILED: {plugin.tracking_error}. The results are safe in {plugin.run_dir}; "
            f"log them later with: pytest-genai upload {plugin.run_dir}", red=True, bold=True)
    elif not plugin.tracking_enabled:
        tr.write_line("mlflow: tracking.enabled is false; nothing logged")
    failing = summary.failing_gates
    if failing and summary.enforced:
        parts = [f"{g.metric}={fmt(g.value)} (gate {g.expression.strip()}{', ' + g.reason if g.reason else ''})" for g in failing]
        tr.write_line(f"GATES FAILED: {'; '.join(parts)}", red=True, bold=True)
    elif summary.gates and summary.enforced:
        tr.write_line(f"gates passed: {len(summary.gates)} of {len(summary.gates)}", green=True)
