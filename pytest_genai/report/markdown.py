"""The run's markdown summary for CI: GitHub's job summary (`$GITHUB_STEP_SUMMARY`) and a pull-request comment
(`--genai-markdown PATH`). Rendered from the run record and its comparison.json only (both already sanitized), with
the terminal table's formatting, so the three say the same thing.

Whatever comes from the run (case ids, errors, reasons) is put in code spans: GitHub then renders no markdown, HTML,
link or @mention out of it. Tables are cut to their first rows and the whole text to MAX_CHARS (a comment holds at
most 65,536 characters); the HTML report and comparison.json hold everything."""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

from pytest_genai.compare.baseline import describe
from pytest_genai.compare.pairing import case_passed
from pytest_genai.metrics.registry import METRICS
from pytest_genai.report.html import regressed_from_comparison
from pytest_genai.report.terminal import ci_text, delta_text, fmt, gate_verdict, is_stat, metric_order, p_text, power_lines, estimate_lines, clear_after_holm, flaky_cases, flaky_row, repeats_note
from pytest_genai.runlog import is_skipped
from pytest_genai.sanitize import headline

MAX_CHARS = 50_000  # well under GitHub's 65,536 per comment (and its 1 MiB step summary)
TOP_CASES = 10  # failing and regressed cases listed
MAX_GATES = 50
MAX_METRICS = 100
MAX_ERRORS = 10
CELL_CHARS = 120  # a case id, a rule, a reason
ERROR_CHARS = 160  # a case's error, its last line
RUN_ERROR_CHARS = 500
ARTIFACT = "genai-results"  # the artifact .github/workflows/genai-eval.yml uploads the run folder as
# The metrics of the first table (with every gated one and every clear change against the baseline, in registry
# order); all of them go in a collapsed table at the end.
HEADLINE = ("em", "f1", "hit_at_k", "recall_at_k", "mrr", "latency_p50_ms", "latency_p95_ms", "cost_total_usd",
            "cost_per_question_usd", "error_rate", "pii_flag_rate", "toxicity_flag_rate", "block_rate",
            "pref_win_rate")
_WS = re.compile(r"\s+")
_MD_PUNCT = re.compile(r"([\\`*_\[\]~#!])")


# --------------------------------------------------------------------------- escaping

def clip(text: Any, limit: int) -> str:
    """One line (white space collapsed), at most `limit` characters (an ellipsis marks a cut)."""
    s = _WS.sub(" ", "" if text is None else str(text)).strip()
    return s if len(s) <= limit else s[: max(limit - 1, 0)].rstrip() + "…"


def code(text: Any, limit: int = CELL_CHARS) -> str:
    """A code span: one line, clipped, fenced with more backticks than it holds (in a table, `_table` escapes its
    pipes). Empty text is an empty string."""
    s = clip(text, limit)
    if not s:
        return ""
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or longest else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def text(value: Any, limit: int = CELL_CHARS) -> str:
    """Plain text for markdown: one line, clipped, HTML and markdown punctuation escaped (our own words and numbers:
    gate verdicts, CIs; run data goes in `code`). Pipes are escaped by `_table`, where they matter."""
    s = clip(value, limit).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_PUNCT.sub(r"\\\1", s)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], limit: int, what: str) -> list[str]:
    """Cells already escaped but for pipes: GitHub splits a row at every `|` not right after a backslash, before it
    parses code spans, and unescapes `\\|` inside them. Rows past `limit` are counted, not shown."""
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") or " " for cell in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        out.append(f"\n… and {len(rows) - limit} more {what}")
    return out


# --------------------------------------------------------------------------- the summary

def render_markdown(record: Any, comparison: Mapping[str, Any] | None = None, *, report_hint: str | None = None,
                    run_dir: str | None = None) -> str:
    """The summary of a run: verdict, provenance, gates, headline metrics (CI, baseline, paired delta), failing and
    regressed cases, where the report is. `comparison`: comparison.json (every regressed case); `run_dir`: the run
    folder as shown to the reader; `report_hint`: markdown naming where CI keeps it (`github_report_hint`)."""
    sections = [_heading(record), _provenance(record), _errors(record), _gates(record), _metrics(record),
                _failing(record), _flaky(record), _regressed(record, comparison), _where(record, run_dir, report_hint),
                _all_metrics(record)]  # last: a cut to MAX_CHARS takes it first
    return _assemble([s for s in sections if s])


def render_gate_summary(record: Any) -> str:
    """The verdict, the gate table and the provenance line: the MLflow run's description (the UI renders it)."""
    return _assemble([s for s in (_heading(record), _gates(record), _provenance(record)) if s])


def _verdict(record: Any) -> tuple[str, str]:
    """(icon, words) of the heading."""
    if record.errors:
        return "❌", "failed (run errors)"
    if not record.gates:
        return "✅", "passed (no gates)"
    if not record.gates_enforced:
        return "⚠️", "gates not enforced" + ("" if record.gates_passed else " (they fail)")
    return ("✅", "gates passed") if record.gates_passed else ("❌", "gates failed")


def _heading(record: Any) -> list[str]:
    icon, words = _verdict(record)
    status = "" if record.status == "complete" else f" · {record.status} run"
    m, n = record.metrics, len(record.results)
    bits = [f"status **{text(record.status)}**", f"{fmt(m.get('cases_evaluated', n))} of {fmt(m.get('cases_total', n))} cases"]
    failing = sum(1 for r in record.results if _failed(r))
    if record.results:
        bits.append(f"{failing} failing")
    if record.gates:
        skipped = sum(1 for g in record.gates if _skipped(g))
        bits.append(f"gates: {len(record.gates) - skipped} checked" + (f", {skipped} skipped" if skipped else "")
                    + ("" if record.gates_enforced else " (not enforced: partial run)"))
    x = record.execution
    if x.shard:
        bits.append(f"shard {code(x.shard)} of group {code(x.group)}")
    return [f"## {icon} pytest-genai: {words}{status}", "", " · ".join(bits)]


def _provenance(record: Any) -> list[str]:
    p, t = record.provenance, record.tracking
    bits = [f"pipeline {code(p.pipeline or '-')}"]
    if p.prompt_id:
        bits.append(f"prompt {code(f'{p.prompt_id}@{p.prompt_version}')}")
    bits.append(f"eval set {code((p.eval_set_hash or '-')[:12])}")
    dirty = {True: " (dirty)", False: "", None: ""}[p.git_dirty]
    bits.append(f"commit {code((p.git_commit or 'unknown')[:8])}{dirty}")
    bits.append(f"config {code((p.config_hash or '-')[:12])}")
    if t.run_id:
        bits.append(f"MLflow run {code(t.run_id)}")
    elif t.error:
        bits.append(f"MLflow: not logged ({code(t.error, 200)})")
    return [" · ".join(bits)]


def _errors(record: Any) -> list[str]:
    if not record.errors:
        return []
    out = ["### Run errors", ""]
    out += [f"- {code(e, RUN_ERROR_CHARS)}" for e in record.errors[:MAX_ERRORS]]
    if len(record.errors) > MAX_ERRORS:
        out.append(f"- … and {len(record.errors) - MAX_ERRORS} more (run.json)")
    return out


def _skipped(g: Any) -> bool:
    return bool(is_skipped(g))


def _gates(record: Any) -> list[str]:
    if not record.gates:
        return ["### Gates", "", "No gates configured."]
    rows = []
    for g in record.gates:
        verdict = gate_verdict(g, record.gates_enforced)
        icon = "⏭️" if verdict.startswith("skipped") else "✅" if verdict.startswith("pass") else \
            "❌" if verdict.startswith("FAIL") else "⚠️"
        rows.append([code(g.metric), code(g.expression.strip()), text(fmt(g.value)), f"{icon} {text(verdict, 200)}"])
    note = [] if record.gates_enforced else ["", "Partial run: the gates are shown, not enforced "
                                                 "(`--genai-enforce-gates` enforces them)."]
    return ["### Gates", "", *_table(("metric", "rule", "value", "verdict"), rows, MAX_GATES, "gates"), *note]


def _metric_rows(record: Any, names: Iterable[str], cis: Mapping[str, Any], deltas: Mapping[str, Any],
                 base: Mapping[str, float], with_p: bool = False) -> list[list[str]]:
    rows = []
    for name in names:
        metric = METRICS.get(name) if name in METRICS else None
        unit = record.metric_units.get(name) or (metric.unit if metric else "")
        row = [code(name), text(fmt(record.metrics.get(name))), text(unit)]
        if cis:
            row.append(text(ci_text(cis.get(name))))
        if deltas:
            d = deltas.get(name)
            row.append(text(fmt(base[name])) if name in base else "")
            row.append(text(delta_text(d)) + _change(metric, d, clear_after_holm(record, name)) if d is not None else "")
        if with_p:
            row.append(text(p_text(name, record.baseline)))
        row.append(metric.direction if metric else "-")
        rows.append(row)
    return rows


def _change(metric: Any, d: Any, clear: bool = True) -> str:
    """Better or worse only when the paired CI excludes 0 and the Holm-adjusted p agrees: a change this eval set
    can tell from noise, among all the metrics compared."""
    if metric is None or metric.higher_is_better is None or not d.excludes(0.0) or not clear:
        return ""
    return " ✅ better" if (d.point > 0) == bool(metric.higher_is_better) else " ❌ worse"


class _MetricView:
    """What the metric tables read from a record: the metrics shown, the headline ones, the columns."""

    def __init__(self, record: Any) -> None:
        self.record = record
        self.cis = record.cis or {}
        b = record.baseline
        self.deltas = b.deltas if b is not None and b.available else {}
        self.base = b.baseline_metrics if b is not None and b.available else {}
        self.shown = [n for n in metric_order(record) if not is_stat(n, record)]
        gated = {g.metric for g in record.gates}
        clear = {n for n, d in self.deltas.items() if d.excludes(0.0)}
        self.headline = [n for n in self.shown if n in HEADLINE or n in gated | clear]  # in registry order
        self.level = f"{round(100 * record.ci_confidence)}% CI" if record.ci_confidence else "CI"
        self.head = ["metric", "value", "unit"] + ([self.level] if self.cis else []) \
            + (["baseline", "delta (paired CI)"] if self.deltas else []) + (["p (Holm)"] if self.with_p else []) \
            + ["better"]

    @property
    def with_p(self) -> bool:
        return bool(self.deltas and getattr(self.record.baseline, "p_values", None))

    def table(self, names: Sequence[str], what: str) -> list[str]:
        return _table(self.head, _metric_rows(self.record, names, self.cis, self.deltas, self.base, self.with_p),
                      MAX_METRICS, what)


def _metrics(record: Any) -> list[str]:
    if not record.metrics:
        return []
    view = _MetricView(record)
    out = ["### Metrics", ""]
    out += _baseline_line(record)
    if view.headline:
        out += view.table(view.headline, "metrics")
    if len(view.shown) > len(view.headline):
        out += ["", f"All {len(view.shown)} metrics: the collapsed table at the end."]
    if view.cis:
        out += ["", f"{text(view.level)}: percentile bootstrap over cases ({record.ci_resamples} resamples, seed "
                    f"{record.provenance.seed}); ±half is what this eval set can resolve."]
    if view.with_p:
        out += ["", f"p (Holm): the paired delta's two-sided bootstrap p, and in brackets Holm-adjusted over the "
                    f"{len(record.baseline.p_values)} metrics compared (one family)."]
    out += [f"⚠️ {text(line.text, 400)}" for line in power_lines(record) + repeats_note(record)]
    out += ["", text(line.text, 400)] if (line := next(iter(estimate_lines(record)), None)) else []
    return out


def _all_metrics(record: Any) -> list[str]:
    """Every metric, collapsed (GitHub renders <details>)."""
    view = _MetricView(record)
    if not record.metrics or len(view.shown) <= len(view.headline):
        return []
    return [f"<details><summary>all metrics ({len(view.shown)})</summary>", "",
            *view.table(view.shown, "metrics (run.json)"), "", "</details>"]


def _baseline_line(record: Any) -> list[str]:
    b = record.baseline
    if b is None:
        return []
    if not b.available:
        return [f"Baseline: none ({code(b.note or 'not resolved', 200)}); baseline gates skipped.", ""]

    parts = [f"{b.cases_paired} cases paired"]
    if b.intersect:
        parts.append(f"shared ids only ({b.only_candidate} only here, {b.only_baseline} only in the baseline)")
    parts += [f"{k} McNemar p={fmt(v)}" for k, v in b.mcnemar_p.items() if isinstance(v, float) and math.isfinite(v)]
    parts += [f"{b.regressed_count} regressed", f"{b.improved_count} improved"]
    return [f"Baseline {code(describe(b), 200)}: {text(', '.join(parts), 400)}.", ""]


def _failed(r: Any) -> bool:
    return not case_passed(r)


def _why(r: Any) -> str:
    if r.error:
        return headline(str(r.error), str(r.error))
    return "; ".join(r.expect_failures)


def _failing(record: Any) -> list[str]:
    failing = [r for r in record.results if _failed(r)]
    if not failing:
        return _weakest(record)
    rows = [[code(r.id), text(fmt(r.em)), text(fmt(round(r.f1, 3))), code(_why(r), ERROR_CHARS)] for r in failing]
    return [f"### Failing cases ({len(failing)})", "",
            *_table(("case", "EM", "F1", "error"), rows, TOP_CASES, "(all in the report)")]


def _flaky(record: Any) -> list[str]:
    cases = flaky_cases(record)
    if not cases:
        return []
    rows = [[code(cid), text(share), text(verdict)] for cid, share, verdict in map(flaky_row, cases)]
    return [f"### Flaky cases ({len(cases)})", "", f"Their sampled repeats disagree; the case's verdict follows "
            f"eval.pass_policy {code(record.execution.pass_policy)}. Least stable first.", "",
            *_table(("case", "repeats passed", "verdict"), rows, TOP_CASES, "(all in the report)")]


def _weakest(record: Any) -> list[str]:
    """A gate failed on an aggregate while every case passed: the cases that pulled it down (lowest F1, then EM)
    are where a reviewer looks first."""
    if record.gates_passed or not record.results:
        return []
    weakest = sorted(record.results, key=lambda r: (r.f1, r.em, r.id))[:TOP_CASES]
    rows = [[code(r.id), text(fmt(r.em)), text(fmt(round(r.f1, 3))), code(r.answer or "", ERROR_CHARS)]
            for r in weakest]
    return ["### Lowest-scoring cases (no case failed; a gate on an aggregate did)", "",
            *_table(("case", "EM", "F1", "answer"), rows, TOP_CASES, "(all in the report)")]


def _regressed(record: Any, comparison: Mapping[str, Any] | None) -> list[str]:
    b = record.baseline
    if b is None or not b.available:
        return []

    every = regressed_from_comparison(comparison)
    changes = list(every.items()) if every is not None else [(c.id, tuple(c.reasons)) for c in b.regressed]
    count = max(b.regressed_count, len(changes))
    if not count:
        return ["### Regressed cases", "", "None against the baseline."]
    rows = [[code(cid), code("; ".join(reasons), 200)] for cid, reasons in changes]
    out = [f"### Regressed cases ({count})", "", *_table(("case", "why"), rows, TOP_CASES, "(all in comparison.json)")]
    if count > len(changes) and len(changes) <= TOP_CASES:
        out.append(f"\n… and {count - len(changes)} more (all in comparison.json)")
    return out


def _where(record: Any, run_dir: str | None, report_hint: str | None) -> list[str]:
    parts = []
    if run_dir:
        parts.append(f"`report.html` in the run folder {code(run_dir, 300)}")
    if report_hint:
        parts.append(report_hint)
    if not parts:
        return []
    return ["### Report", "", "HTML report: " + "; ".join(parts) + "."]


def github_report_hint(environ: Mapping[str, str], artifact: str = ARTIFACT) -> str | None:
    """Under GitHub Actions: where the run folder went (the artifact of this workflow run, linked); else None.
    The variables are checked for their shape before they become a link."""
    if environ.get("GITHUB_ACTIONS") != "true":
        return None
    hint = f"artifact {code(artifact)}"
    server, repo, run = (environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if (re.fullmatch(r"https://[A-Za-z0-9.-]+(?::[0-9]+)?", server) and re.fullmatch(r"[\w.-]+/[\w.-]+", repo)
            and re.fullmatch(r"[0-9]+", run)):
        hint += f" of [workflow run {run}]({server}/{repo}/actions/runs/{run})"
    return hint


# --------------------------------------------------------------------------- the length cap

def _assemble(sections: Sequence[Sequence[str]]) -> str:
    """Sections joined by blank lines; past MAX_CHARS the text is cut at a line (an open <details> is closed) and
    says so."""
    lines: list[str] = []
    for i, section in enumerate(sections):
        if i:
            lines.append("")
        lines += section
    whole = "\n".join(lines) + "\n"
    if len(whole) <= MAX_CHARS:
        return whole
    note = "\n\n… summary cut at {n:,} characters: the HTML report and run.json hold the rest.\n"
    budget = MAX_CHARS - len(note) - 40
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > budget:
            break
        kept.append(line)
        size += len(line) + 1
    body = "\n".join(kept)
    if body.count("<details>") > body.count("</details>"):
        body += "\n\n</details>"
    return body + note.format(n=MAX_CHARS)
