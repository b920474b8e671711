"""The end-of-session table (metric, value, gate, verdict) and where the run went, rendered from the run
record only: the same lines at the end of a session and in `pytest-genai show`."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from pytest_genai.compare.baseline import describe
from pytest_genai.compare.names import KINDS
from pytest_genai.compare.pairing import case_passed
from pytest_genai.metrics.registry import METRICS
from pytest_genai.runlog import INTERRUPTED, RUNNING, is_skipped


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


def metric_order(record: Any) -> list[str]:
    """The record's metric names: the registry's order first, then the others as the record has them."""
    names = [n for n in METRICS if n in record.metrics]
    return names + [n for n in record.metrics if n not in names]


_STAT_SUFFIXES = tuple(sorted((f"_{k}" for k in KINDS), key=len, reverse=True))  # the longest first


def is_stat(name: str, record: Any) -> bool:
    """A flat comparison metric (f1_ci_low, em_mcnemar_p, ...): logged to MLflow, shown in its own columns."""
    for suffix in _STAT_SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and (base in record.metrics or base == "pass"):
            return True
    return False


def ci_text(ci: Any) -> str:
    """`[low, high] ±half`: the interval and its half-width (what the eval set can resolve)."""
    if ci is None or not all(isinstance(x, float) and math.isfinite(x) for x in (ci.low, ci.high)):
        return ""
    return f"[{fmt(ci.low)}, {fmt(ci.high)}] ±{fmt(ci.half_width)}"


def delta_text(ci: Any) -> str:
    if ci is None or not isinstance(ci.point, float) or not math.isfinite(ci.point):
        return ""
    return f"{ci.point:+.4g} {ci_text(ci)}".rstrip()


def p_text(metric: str, baseline: Any) -> str:
    """`0.012 (0.048)`: the paired delta's raw two-sided p and its Holm-adjusted p (over all metrics compared)."""
    raw, adjusted = baseline.p_values.get(metric), baseline.p_holm.get(metric)
    if raw is None:
        return ""
    return f"{fmt_p(raw)} ({fmt_p(adjusted)})"


def clear_after_holm(record: Any, metric: str) -> bool:
    """The metric's change stands after Holm's adjustment (its adjusted p below 1 - confidence), or no p is known."""
    b = getattr(record, "baseline", None)
    adjusted = (getattr(b, "p_holm", None) or {}).get(metric) if b is not None else None
    if adjusted is None:
        return True
    return adjusted < 1.0 - (getattr(record, "ci_confidence", None) or 0.95)


def fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def power_lines(record: Any) -> list[Line]:
    """A warning per baseline gate whose margin is smaller than what the eval set can detect."""
    out = []
    for g in record.gates:
        if getattr(g, "underpowered", False):
            what = (f"(minimum detectable effect {fmt(g.mde)}, power 0.8)" if g.mde is not None
                    else "(too few paired cases to estimate what it can detect)")
            out.append(Line(f"power: gate {g.metric} {g.expression.strip()} asks about a smaller change than this eval set "
                            f"can detect {what}: add cases or widen the margin; compare.require_power: true fails "
                            "such a gate", "yellow"))
    return out


FLAKY_SHOWN = 10  # flaky cases listed in the terminal and the step summary (the HTML report lists them all)


def flaky_cases(record: Any) -> list[Any]:
    """The cases whose sampled repeats disagreed, least stable first (pass rate nearest one half), then in run order."""
    return sorted((r for r in record.results if r.flip), key=lambda r: abs((r.pass_rate or 0.0) - 0.5))


def flaky_row(r: Any) -> tuple[str, str, str]:
    """(case id, "k of n", verdict by eval.pass_policy)."""
    return r.id, f"{r.repeats.get('passed', '?')} of {r.repeats.get('n', '?')}", "pass" if case_passed(r) else "FAIL"


def repeats_note(record: Any) -> list[Line]:
    """A baseline that repeated otherwise: what its comparison leaves out."""
    b, x = getattr(record, "baseline", None), record.execution
    if b is None or not b.available or b.repeat is None or (b.repeat, b.pass_policy) == (x.repeat, x.pass_policy):
        return []

    def ran(n: int, policy: str | None) -> str:
        return f"{n} repeat{'s' if n != 1 else ''} a case" + (f" (sampled, eval.pass_policy {policy})" if policy else "")
    return [Line(f"repeats: the baseline ran {ran(b.repeat, b.pass_policy)}, this run {ran(x.repeat, x.pass_policy)}: "
                 "flip_rate, pass_at_k and pass_all_k are not compared (they depend on the number of repeats), and "
                 "case verdicts follow each run's own", "yellow")]


def flaky_lines(record: Any) -> list[Line]:
    """The flaky cases: their repeats' verdicts disagree."""
    cases = flaky_cases(record)
    if not cases:
        return []
    sampled = sum(r.pass_rate is not None for r in record.results)
    out = [Line(f"flaky: {len(cases)} of {sampled} cases passed some of their sampled repeats, not all (eval.pass_policy "
                f"{record.execution.pass_policy}); least stable first:", "yellow")]
    for r in cases[:FLAKY_SHOWN]:
        cid, share, verdict = flaky_row(r)
        out.append(Line(f"  {cid}: {share} repeats passed; the case's verdict: {verdict}", "yellow"))
    if len(cases) > FLAKY_SHOWN:
        out.append(Line(f"  ... and {len(cases) - FLAKY_SHOWN} more (the HTML report; results.jsonl: pass_rate, flip, "
                        "repeats)", "yellow"))
    return out


def usd(x: float) -> str:
    """Dollars with enough digits to tell small figures apart ($0.000133, $0.285, $12.50)."""
    if x == 0:
        return "$0"
    return f"${x:,.2f}" if abs(x) >= 10 else f"${x:#.3g}" if abs(x) >= 0.001 else f"${x:.3g}"


def estimate_lines(record: Any) -> list[Line]:
    """The estimate made before any call (budget:) against what the run used."""
    est = getattr(record, "estimate", None)
    if est is None:
        return []
    m = record.metrics
    cost, tokens_in = m.get("cost_total_usd"), m.get("tokens_input_total")
    expected = f", expected {usd(est.cost_usd_expected)}" if est.cost_usd_expected is not None else ""
    parts = [f"cost {usd(est.cost_usd_low)}–{usd(est.cost_usd_high)}{expected}, actual "
             + (usd(cost) if cost is not None else "n/a"),
             f"input tokens {est.input_tokens:,}, actual " + (f"{int(tokens_in):,}" if tokens_in is not None else "n/a")]
    errors = [f"{k} {round(m[k], 6) or 0.0:+.1%}" for k in ("cost_estimate_rel_error", "tokens_input_estimate_rel_error") if k in m]
    return [Line("estimate (before any call) vs actual: " + "; ".join(parts) + (f" ({', '.join(errors)})" if errors else ""))]


def gate_verdict(g: Any, enforced: bool) -> str:
    if is_skipped(g):
        reason = g.reason.split(":", 1)[1].strip() if g.reason.startswith("skipped:") else g.reason
        return f"skipped ({reason})"
    verdict = "pass" if g.passed else ("FAIL" if enforced else "fail (not enforced)")
    return verdict + (f" ({g.reason})" if g.reason else "")


def summary_lines(record: Any) -> list[Line]:
    """The metric table with units, CIs, deltas against the baseline and gate verdicts, then the comparison,
    status and errors: everything from the record."""
    out: list[Line] = []
    p = record.provenance
    if "cases_evaluated" not in record.metrics and record.status in (RUNNING, INTERRUPTED):  # a journal's record
        done, total = len(record.results), fmt(record.metrics.get("cases_total"))
        if record.status == RUNNING:
            return [Line(f"{RUNNING}: {done} of {total} cases finished so far (the session is still going)", "yellow")]
        return [Line(f"{INTERRUPTED} run: {done} of {total} cases finished; the session ended before its record "
                     "(killed or crashed): no metrics were computed", "yellow")]
    if p.env_drift:
        out.append(Line(f"env drift: {p.env_drift} package(s) differ from {p.env_lock_file}:", "yellow"))
        out += [Line(f"  {ln}", "yellow") for ln in p.env_drift_lines[:20]]
    if p.env_lock_hash is None and any(g.metric == "env_drift" for g in record.gates):  # else: no lock, no news
        out.append(Line(f"env: lock file {p.env_lock_file or '(none configured)'} not found: env_drift is not computed "
                        "(a gate on it fails)", "yellow"))
    cis = getattr(record, "cis", None) or {}
    b = getattr(record, "baseline", None)
    deltas = b.deltas if b is not None else {}
    level = f"{round(100 * record.ci_confidence)}% CI" if getattr(record, "ci_confidence", None) else "CI"
    by_metric: dict[str, list[Any]] = {}
    for g in record.gates:
        by_metric.setdefault(g.metric, []).append(g)
    p_raw = getattr(b, "p_values", None) or {} if deltas else {}
    head = ["metric", "value"] + ([level] if cis else []) + (["vs baseline (delta, paired CI)"] if deltas else []) \
        + (["p (Holm)"] if p_raw else []) + ["unit", "gate", "result"]
    rows: list[list[str]] = [head]
    shown = [m for m in metric_order(record) if not is_stat(m, record)]
    for metric in shown + [m for m in by_metric if m not in record.metrics]:
        unit = record.metric_units.get(metric) or (METRICS.get(metric).unit if metric in METRICS else "")
        for i, g in enumerate(by_metric.get(metric) or [None]):
            first = i == 0
            row = [metric if first else "", fmt(record.metrics.get(metric)) if first else ""]
            if cis:
                row.append(ci_text(cis.get(metric)) if first else "")
            if deltas:
                row.append(delta_text(deltas.get(metric)) if first else "")
            if p_raw:
                row.append(p_text(metric, b) if first else "")
            row += [unit if first else "", g.expression.strip() if g else "",
                    gate_verdict(g, record.gates_enforced) if g else ""]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for i, row in enumerate(rows):
        text = "  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip()
        verdict = row[-1]
        out.append(Line(text, "bold" if i == 0 else ("red" if verdict.startswith("FAIL") else
                                                      ("green" if verdict.startswith("pass") else
                                                       ("yellow" if verdict.startswith("skipped") else "")))))
    out += comparison_lines(record)
    out += power_lines(record)
    out += estimate_lines(record)
    out += repeats_note(record)
    out += flaky_lines(record)
    if record.status != "complete":
        note = "enforced (--genai-enforce-gates)" if record.gates_enforced else "NOT enforced"
        out.append(Line(f"{record.status} run: {fmt(record.metrics.get('cases_evaluated'))} of "
                        f"{fmt(record.metrics.get('cases_total'))} cases; gates {note}; tagged genai.partial=true", "yellow"))
    for error in record.errors:
        out.append(Line(f"RUN ERROR: {error}", "red-bold"))
    return out


def comparison_lines(record: Any) -> list[Line]:
    """How to read the CIs, the baseline (or why there is none), McNemar, and the regressed / improved cases."""
    out: list[Line] = []
    cis = getattr(record, "cis", None) or {}
    b = getattr(record, "baseline", None)
    deltas = (b.deltas if b is not None and b.available else None) or {}
    if cis:
        # with a baseline the paired delta's CI is what says which change this eval set can see; else the run's own
        source, kind = (deltas, "paired delta") if deltas else (cis, "")
        name = "f1" if "f1" in source else next(iter(source))
        ci = source[name]
        text = (f"CIs: {round(100 * (record.ci_confidence or 0.95))}% percentile bootstrap over cases "
                f"({record.ci_resamples} resamples, seed {record.provenance.seed}). ±half is what this eval set can resolve")
        if ci.half_width > 0:
            text += (f": with {ci.n} {'pairs' if kind else 'cases'} a change in {name} smaller than about "
                     f"{fmt(ci.half_width)}{' (' + kind + ' ±half)' if kind else ''} is indistinguishable from noise")
        else:
            text += f" ({name} did not vary across the resampled cases: its CI has no width)"
        out.append(Line(text))
    if b is None:
        return out
    if not b.available:
        needing = [g for g in record.gates if is_skipped(g) or "baseline is required" in (g.reason or "")]
        what = ("baseline gates skipped" if any(is_skipped(g) for g in needing)
                else "baseline gates FAIL (--genai-require-baseline)" if needing else "no gate needs one")
        out.append(Line(f"baseline: none ({b.note or 'not resolved'}); {what}", "yellow"))
        return out
    parts = [f"{b.cases_paired} cases paired"]
    if b.intersect:
        parts.append(f"shared ids only ({b.only_candidate} only here, {b.only_baseline} only in the baseline)")
    parts += [f"{k} McNemar p={fmt(v)}" for k, v in b.mcnemar_p.items() if isinstance(v, float) and math.isfinite(v)]
    out.append(Line(f"baseline: {describe(b)}: {', '.join(parts)}"))
    if getattr(b, "p_values", None):
        out.append(Line(f"p: two-sided bootstrap p of each delta, and Holm-adjusted over the {len(b.p_values)} metrics "
                        "compared (one family): read the adjusted one when scanning many metrics"))
    for label, count, changes, style in (("regressed", b.regressed_count, b.regressed, "red"),
                                          ("improved", b.improved_count, b.improved, "green")):
        if not count:
            out.append(Line(f"{label}: none"))
            continue
        more = f", top {len(changes)} shown (all in comparison.json)" if count > len(changes) else ""
        out.append(Line(f"{label}: {count} case(s){more}", style))
        out += [Line(f"  {c.id}: {'; '.join(c.reasons)}", style) for c in changes]
    return out


def verdict_lines(record: Any) -> list[Line]:
    failing = record.failing_gates
    if failing and record.gates_enforced:
        parts = [f"{g.metric}={fmt(g.value)} (gate {g.expression.strip()}{', ' + g.reason if g.reason else ''})" for g in failing]
        return [Line(f"GATES FAILED: {'; '.join(parts)}", "red-bold")]
    if record.gates and record.gates_enforced:
        skipped = sum(is_skipped(g) for g in record.gates)
        checked = len(record.gates) - skipped
        note = f" ({skipped} skipped: no baseline)" if skipped else ""
        m = record.metrics
        errored = round(float(m.get("error_rate") or 0) * float(m.get("cases_evaluated") or 0))
        if errored:  # the gates held, but an errored case fails its item (and the session)
            return [Line(f"gates passed: {checked} of {checked}{note}; but {errored} case(s) errored", "yellow")]
        return [Line(f"gates passed: {checked} of {checked}{note}", "green")]
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
        logged = [f"{t.traces} case traces"] if getattr(t, "traces", 0) else []
        if getattr(t, "prompt_uri", None):
            logged.append(f"prompt {t.prompt_uri}")
        if logged:
            out.append(Line("mlflow: " + ", ".join(logged) + ", eval set as the dataset input"))
        out += [Line(f"mlflow warning: {w}", "yellow") for w in getattr(t, "warnings", ())]
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


@dataclass(frozen=True)
class SessionOutcome:
    """What the terminal summary of an eval session shows: the record and where it went, or why there is none."""

    record: Any = None  # runlog.RunRecord; None: no case ran
    run_dir: Path | None = None
    tracking_enabled: bool = True
    tracking_error: str | None = None
    local_error: str | None = None
    hook_error: str | None = None
    prompt_check_error: str | None = None
    build_failure: str | None = None  # xdist: the pipeline built on no worker
    lines: tuple[Line, ...] = ()  # merge, markdown, registry


def write_session_summary(tr: Any, outcome: SessionOutcome, *, sanitizer: Any, hook: Any) -> None:
    """The `pytest-genai` section: the hook's lines (the built-in metric table first), where the run went, the
    release lines, the verdict."""
    tr.section("pytest-genai", sep="=", bold=True)
    if outcome.prompt_check_error:
        tr.write_line(f"warning: {outcome.prompt_check_error}", yellow=True)
    record = outcome.record
    if record is None:
        if outcome.build_failure:
            tr.write_line(f"RUN ERROR: the pipeline did not build on any worker: {outcome.build_failure}", red=True, bold=True)
            tr.write_line("no eval ran; nothing was recorded or logged")
            return
        tr.write_line("no case ran; nothing was logged")
        return
    for extra in hook.pytest_genai_terminal_lines(record=record):  # the built-in table comes first
        for item in ([extra] if isinstance(extra, str) else extra or ()):  # one str is one line, not its characters
            line = item if isinstance(item, Line) else Line(str(item))
            write_lines(tr, [Line(sanitizer.text(line.text) or "", line.style)])
    shown = record
    if outcome.tracking_error and (record.tracking.error is None):
        shown = replace(record, tracking=replace(record.tracking, error=outcome.tracking_error))
    write_lines(tr, tracking_lines(shown, outcome.run_dir, outcome.local_error, outcome.tracking_enabled))
    if outcome.hook_error:
        write_lines(tr, [Line(f"HOOK ERROR: {outcome.hook_error}", "red-bold")])
    write_lines(tr, outcome.lines)
    write_lines(tr, verdict_lines(record))
