"""The end-of-session table (metric, value, gate, verdict) and where the run went, rendered from the run
record only: the same lines at the end of a session and in `pytest-genai show`."""

from __future__ import annotations

import math
from typing import Any, Iterable, NamedTuple


class Line(NamedTuple):
    text: str
    style: str = ""  # "", bold, red, green, yellow, red-bold, green-bold


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if float(value).is_integer() and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.3e}"


def _metric_order(record: Any) -> list[str]:
    import pytest_genai.metrics.builtin  # noqa: F401
    from pytest_genai.metrics.registry import METRICS

    names = [n for n in METRICS if n in record.metrics]
    return names + [n for n in record.metrics if n not in names]


def summary_lines(record: Any) -> list[Line]:
    """The metric table with units and gate verdicts, then status and errors: everything from the record."""
    from pytest_genai.metrics.registry import METRICS

    out: list[Line] = []
    p = record.provenance
    if p.env_drift:
        out.append(Line(f"env drift: {p.env_drift} package(s) differ from {p.env_lock_file}:", "yellow"))
        out += [Line(f"  {ln}", "yellow") for ln in p.env_drift_lines[:20]]
    if p.env_lock_hash is None:
        out.append(Line(f"env: lock file {p.env_lock_file or '(none configured)'} not found: env_drift is not computed "
                        "(a gate on it fails)", "yellow"))
    gates = {g.metric: g for g in record.gates}
    rows = [("metric", "value", "unit", "gate", "result")]
    for metric in _metric_order(record) + [m for m in gates if m not in record.metrics]:
        g = gates.get(metric)
        verdict = "" if g is None else ("pass" if g.passed else ("FAIL" if record.gates_enforced else "fail (not enforced)"))
        if g is not None and g.reason:
            verdict += f" ({g.reason})"
        unit = record.metric_units.get(metric) or (METRICS.get(metric).unit if metric in METRICS else "")
        rows.append((metric, fmt(record.metrics.get(metric)), unit, g.expression.strip() if g else "", verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, row in enumerate(rows):
        text = "  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip()
        out.append(Line(text, "bold" if i == 0 else ("red" if row[4].startswith("FAIL") else ("green" if row[4] == "pass" else ""))))
    if record.status != "complete":
        note = "enforced (--genai-enforce-gates)" if record.gates_enforced else "NOT enforced"
        out.append(Line(f"{record.status} run: {fmt(record.metrics.get('cases_evaluated'))} of "
                        f"{fmt(record.metrics.get('cases_total'))} cases; gates {note}; tagged genai.partial=true", "yellow"))
    for error in record.errors:
        out.append(Line(f"RUN ERROR: {error}", "red-bold"))
    return out


def verdict_lines(record: Any) -> list[Line]:
    failing = record.failing_gates
    if failing and record.gates_enforced:
        parts = [f"{g.metric}={fmt(g.value)} (gate {g.expression.strip()}{', ' + g.reason if g.reason else ''})" for g in failing]
        return [Line(f"GATES FAILED: {'; '.join(parts)}", "red-bold")]
    if record.gates and record.gates_enforced:
        return [Line(f"gates passed: {len(record.gates)} of {len(record.gates)}", "green")]
    return []


def tracking_lines(record: Any, run_dir: Any, local_error: str | None = None, tracking_enabled: bool = True) -> list[Line]:
    t = record.tracking if record is not None else None
    out: list[Line] = []
    if local_error:
        out.append(Line(f"LOCAL RESULTS FAILED: {local_error}; nothing was sent to MLflow", "red-bold"))
    elif run_dir is not None and not str(run_dir).startswith("mlflow:"):
        out.append(Line(f"local results: {run_dir}"))
    if t is not None and t.run_id:
        out.append(Line(f"mlflow run: {t.run_id} (experiment {t.experiment!r}, tracking uri {t.uri or 'MLflow default'})"))
    elif t is not None and t.error:
        out.append(Line(f"TRACKING FAILED: {t.error}. The results are safe in {run_dir}; log them later with: "
                        f"pytest-genai upload {run_dir}", "red-bold"))
    elif not tracking_enabled:
        out.append(Line("mlflow: tracking.enabled is false; nothing logged"))
    return out


def write_lines(tr: Any, lines: Iterable[Line]) -> None:
    for line in lines:
        style = {s: True for s in line.style.split("-") if s}
        tr.write_line(line.text, **style)


def write_session_summary(tr: Any, plugin: Any) -> None:
    tr.section("pytest-genai", sep="=", bold=True)
    if plugin.prompt_check_error:
        tr.write_line(f"warning: {plugin.prompt_check_error}", yellow=True)
    record = plugin.record
    if record is None:
        tr.write_line("no case ran; nothing was logged")
        return
    write_lines(tr, summary_lines(record))
    for extra in plugin.config.hook.pytest_genai_terminal_lines(record=record):
        for text in extra or ():
            tr.write_line(plugin.state.sanitizer.text(str(text)) or "")
    shown = record
    if plugin.tracking_error and (record.tracking.error is None):
        from dataclasses import replace

        shown = replace(record, tracking=replace(record.tracking, error=plugin.tracking_error))
    write_lines(tr, tracking_lines(shown, plugin.run_dir, plugin.local_error, plugin.tracking_enabled))
    write_lines(tr, getattr(plugin, "release_lines", ()))
    write_lines(tr, verdict_lines(record))
