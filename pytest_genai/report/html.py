"""The static HTML report of a run: one self-contained file (inline CSS and JS, no network) rendered from the run
record only, so the same page comes out of a session (`report.html` in the run folder, an MLflow artifact) and of
`pytest-genai report RUN`.

The summary parts (provenance, gates, metrics, histograms) are HTML escaped here; the cases are embedded once as
JSON in a `<script type="application/json">` element and the table is built in the browser with `textContent`
only, in chunks, with the details of a row built when it is first opened: 10,000 cases stay a few MB and the page
stays responsive. A Content-Security-Policy allows nothing but this page's own script and style (by hash): no
request can leave the page, and an injected script would not run. The page skeleton, the CSS and the JS are
package data: report/templates/."""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
from importlib import resources
from typing import Any, Iterable, Mapping, Sequence

from pytest_genai.compare.baseline import describe
from pytest_genai.metrics.registry import METRICS
from pytest_genai.report.terminal import ci_text, delta_text, fmt, gate_verdict, is_stat, metric_order, p_text, power_lines, estimate_lines, clear_after_holm, flaky_cases, flaky_row, repeats_note
from pytest_genai.runlog import RunRecord
from pytest_genai.types import CaseResult

HIST_BINS = 30
PAGE_ALL_UP_TO = 500  # smaller runs show every case on one page; larger ones 250 a page (the DOM stays small)

# The order of a case's fields in the embedded JSON (a list per case: no repeated keys). The JS reads the same
# names from the `fields` list it is given, so the two cannot drift apart.
FIELDS = ("id", "question", "answer", "gold", "em", "f1", "latency_ms", "input_tokens", "output_tokens", "cost_usd",
          "error", "prompt", "retrieved", "safety_flags", "blocked", "critical", "toxicity", "expect_failures",
          "regressed", "hit_at_k", "reciprocal_rank", "cached", "repeats")
RETRIEVED_FIELDS = ("rank", "chunk_id", "doc_id", "score", "used")


def render_html(record: RunRecord, regressed: Mapping[str, Sequence[str]] | None = None) -> str:
    """The report page. `regressed`: every regressed case id -> its reasons (comparison.json holds all of them);
    without it the record's own list is used, which keeps the most severe few."""
    changes = _regressed(record, regressed)
    data = _cases_json(record.results, changes)
    body = "\n".join([
        _header(record),
        _errors(record),
        _section("Gates", _gates(record)),
        _section("Metrics", _metrics(record)),
        _baseline(record, changes),
        _flaky(record),
        _section("Distributions", _histograms(record)),
        _cases_section(record, changes),
    ])
    title = f"pytest-genai report · {record.provenance.pipeline or 'run'} · {record.started_at}"
    # the exact texts of the <style> and <script> elements: a CSP hash covers an element's whole text
    style, script = "\n" + _template("report.css"), "\n" + _template("report.js")
    csp = (f"default-src 'none'; script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    return _page().render(csp=_e(csp), title=_e(title), style=style, body=body, cases_json=data, script=script)


@functools.cache
def _template(name: str) -> str:
    """A file of report/templates/ (package data), read once."""
    return resources.files(__package__).joinpath("templates", name).read_text("utf-8")


def _page() -> Any:
    """The page skeleton (templates/report.html.j2). Autoescaped: a value it does not mark `|safe` is escaped; the
    ones it marks are HTML escaped here, the CSS, the JS and the JSON escaped for a <script> element. Compiled per
    call (a few ms a report), so a jinja2 re-imported by pytester's in-process runs is never mixed with an old one."""
    from jinja2 import Environment, StrictUndefined

    env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
    return env.from_string(_template("report.html.j2"))


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _section(title: str, inner: str, sid: str = "") -> str:
    ident = f" id=\"{sid}\"" if sid else ""
    return f"<section{ident}>\n<h2>{_e(title)}</h2>\n{inner}\n</section>"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """Cells are already HTML (escaped by the caller)."""
    klass = f" class=\"{cls}\"" if cls else ""
    out = [f"<table{klass}><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# --------------------------------------------------------------------------- summary parts (escaped here)

def _header(record: RunRecord) -> str:
    p, t, x = record.provenance, record.tracking, record.execution
    if not record.gates:
        verdict, vcls = "no gates", "muted"
    elif record.gates_passed:
        verdict, vcls = "gates passed", "pass"
    else:
        verdict, vcls = "gates failed" + ("" if record.gates_enforced else " (not enforced)"), \
            "fail" if record.gates_enforced else "warn"
    cases = fmt(record.metrics.get("cases_total", len(record.results)))
    badges = (f"<span class=\"badge {'pass' if record.status == 'complete' else 'warn'}\">status: {_e(record.status)}</span>"
              f"<span class=\"badge {vcls}\" id=\"verdict\">{_e(verdict)}</span>"
              f"<span class=\"badge muted\">{_e(cases)} cases</span>")
    prompt = "-"
    if p.prompt_id:
        prompt = f"<code>{_e(p.prompt_id)}@{_e(p.prompt_version)}</code> hash <code>{_e(p.prompt_hash or '-')}</code>"
    dirty = {True: "dirty", False: "clean", None: "unknown"}[p.git_dirty]
    if p.git_dirty_paths:
        dirty += ": " + ", ".join(p.git_dirty_paths[:20]) + (" …" if len(p.git_dirty_paths) > 20 else "")
    drift = "not computed (no lock file)" if p.env_lock_hash is None else fmt(p.env_drift)
    rows: list[tuple[str, str]] = [
        ("status", _e(record.status) + ("" if record.gates_enforced else " · gates not enforced")),
        ("time", f"{_e(record.started_at)} → {_e(record.ended_at)}"),
        ("pipeline", f"<code>{_e(p.pipeline or '-')}</code>"),
        ("config", f"<code>{_e(p.config_path or '-')}</code> hash <code>{_e(p.config_hash or '-')}</code>"),
        ("seed", _e(p.seed)),
        ("prompt", prompt),
        ("eval set", f"<code>{_e(p.eval_set_path or '-')}</code> hash <code>{_e(p.eval_set_hash or '-')}</code>"),
        ("index fingerprint", f"<code>{_e(p.index_fingerprint)}</code>" if p.index_fingerprint else "-"),
    ]
    rows += [(f"model {k}", f"<code>{_e(v)}</code>") for k, v in sorted(p.model_hashes.items())] or [("models", "-")]
    rows += [
        ("git", f"<code>{_e(p.git_commit)}</code> on <code>{_e(p.git_branch)}</code> ({_e(dirty)})"),
        ("env lock", f"<code>{_e(p.env_lock_file or '-')}</code> hash <code>{_e(p.env_lock_hash or '-')}</code>"),
        ("env drift", _e(drift) + "".join(f"<br><code>{_e(ln)}</code>" for ln in p.env_drift_lines[:20])),
        ("python · platform", f"{_e(p.python or '-')} · {_e(p.platform or '-')}"),
        ("execution", _e(f"{x.plan} (size {x.size}{', ' + x.reason if x.reason else ''}); repeat {x.repeat}"
                         f"{' (sampled, eval.pass_policy ' + x.pass_policy + ')' if x.pass_policy else ''}; "
                         f"cache {x.cache_mode}; workers {x.workers}")),
        ("redaction", _e(p.redaction)),
        ("tracking", _e(f"experiment {t.experiment!r}, uri {t.uri or 'MLflow default'}"
                        + (f", run {t.run_id}" if t.run_id else "") + (f"; error: {t.error}" if t.error else ""))),
        ("pytest-genai", _e(p.pytest_genai_version or "-")),
    ]
    kv = "".join(f"<tr><th scope=\"row\">{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return (f"<header>\n<h1>pytest-genai run report</h1>\n<p class=\"badges\">{badges}</p>\n"
            f"<table class=\"kv\" id=\"provenance\"><tbody>{kv}</tbody></table>\n</header>")


def _errors(record: RunRecord) -> str:
    if not record.errors:
        return ""
    items = "".join(f"<li>{_e(err)}</li>" for err in record.errors)
    return f"<section id=\"errors\" class=\"errors\"><h2>Run errors</h2><ul>{items}</ul></section>"


def _verdict_class(text: str) -> str:
    return "pass" if text.startswith("pass") else "fail" if text.startswith(("FAIL", "fail")) else \
        "skip" if text.startswith("skipped") else ""


def _gates(record: RunRecord) -> str:
    if not record.gates:
        return "<p class=\"muted\">No gates configured.</p>"
    rows = []
    for g in record.gates:
        verdict = gate_verdict(g, record.gates_enforced)
        rows.append((_e(g.metric), _e(fmt(g.value)), f"<code>{_e(g.expression.strip())}</code>",
                     f"<span class=\"v {_verdict_class(verdict)}\">{_e(verdict)}</span>"))
    note = "" if record.gates_enforced else "<p class=\"warn\">Partial run: gates are shown but not enforced.</p>"
    return note + _table(("metric", "value", "gate", "verdict"), rows, "gates")


def _metrics(record: RunRecord) -> str:
    if not record.metrics:
        return "<p class=\"muted\">No metrics.</p>"
    cis = record.cis or {}
    b = record.baseline
    deltas = b.deltas if b is not None and b.available else {}
    base = b.baseline_metrics if b is not None and b.available else {}
    level = f"{round(100 * record.ci_confidence)}% CI" if record.ci_confidence else "CI"
    with_p = bool(deltas and b is not None and b.p_values)
    head = ["metric", "value", "unit"] + ([level] if cis else []) + (["baseline", "delta (paired CI)"] if deltas else []) \
        + (["p (Holm)"] if with_p else [])
    gated = {g.metric for g in record.gates}
    rows = []
    for name in metric_order(record):
        if is_stat(name, record):
            continue
        unit = record.metric_units.get(name) or (METRICS.get(name).unit if name in METRICS else "")
        row = [_e(name) + (" <span class=\"tag\">gate</span>" if name in gated else ""),
               _e(fmt(record.metrics.get(name))), _e(unit)]
        if cis:
            row.append(_e(ci_text(cis.get(name))))
        if deltas:
            d = deltas.get(name)
            row.append(_e(fmt(base.get(name))) if name in base else "")
            row.append(f"<span class=\"{_delta_class(name, d, clear_after_holm(record, name))}\">{_e(delta_text(d))}</span>"
                       if d is not None else "")
        if with_p:
            row.append(_e(p_text(name, b)))
        rows.append(row)
    note = ""
    if cis:
        note = (f"<p class=\"muted\">{_e(level)}: percentile bootstrap over cases ({record.ci_resamples} resamples, seed "
                f"{record.provenance.seed}); ±half is what this eval set can resolve.</p>")
    if with_p:
        note += (f"<p class=\"muted\">p (Holm): the paired delta's two-sided bootstrap p, and in brackets Holm-adjusted "
                 f"over the {len(b.p_values)} metrics compared (one family).</p>")
    note += "".join(f"<p class=\"warn\">{_e(line.text)}</p>" for line in power_lines(record) + repeats_note(record))
    note += "".join(f"<p class=\"muted\">{_e(line.text)}</p>" for line in estimate_lines(record))
    return _table(head, rows, "metrics") + note


def _delta_class(name: str, d: Any, clear: bool = True) -> str:
    """Green or red only when the paired CI excludes 0 and the Holm-adjusted p agrees (a change this eval set can
    tell from noise, among all the metrics compared)."""
    if d is None or not d.excludes(0.0) or not clear or name not in METRICS or METRICS.get(name).higher_is_better is None:
        return "delta"
    better = (d.point > 0) == bool(METRICS.get(name).higher_is_better)
    return "delta pass" if better else "delta fail"


def _baseline(record: RunRecord, changes: Mapping[str, Sequence[str]]) -> str:
    b = record.baseline
    if b is None:
        return ""

    if not b.available:
        return _section("Baseline", f"<p class=\"warn\">No baseline ({_e(b.note or 'not resolved')}): baseline gates "
                                    "skipped.</p>", "baseline")
    parts = [f"{b.cases_paired} cases paired"]
    if b.intersect:
        parts.append(f"shared ids only ({b.only_candidate} only here, {b.only_baseline} only in the baseline)")
    parts += [f"{k} McNemar p={fmt(v)}" for k, v in b.mcnemar_p.items() if isinstance(v, float) and math.isfinite(v)]
    listed = f" ({len(changes)} listed in the table)" if len(changes) < b.regressed_count else ""
    return _section("Baseline", (
        f"<p>{_e(describe(b))}: {_e(', '.join(parts))}.</p>"
        f"<p><span class=\"v fail\">regressed: {b.regressed_count}</span>{_e(listed)} · "
        f"<span class=\"v pass\">improved: {b.improved_count}</span></p>"), "baseline")


# --------------------------------------------------------------------------- histograms (inline SVG)

def _histograms(record: RunRecord) -> str:
    answered = [r for r in record.results if r.error is None]
    lat = [r.latency_ms for r in answered if _finite(r.latency_ms)]
    cost = [r.cost_usd for r in answered if _finite(r.cost_usd)]
    marks = [(q, record.metrics[f"latency_{q}_ms"]) for q in ("p50", "p95") if _finite(record.metrics.get(f"latency_{q}_ms"))]
    return ("<div class=\"hists\">"
            + _histogram_svg(lat, "latency per case", "ms", "hist-latency", marks)
            + _histogram_svg(cost, "cost per case", "USD", "hist-cost", [])
            + "</div>")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _histogram_svg(values: Sequence[float], title: str, unit: str, ident: str,
                   marks: Sequence[tuple[str, float]]) -> str:
    """Counts in HIST_BINS equal bins from min to max; each bar has a <title> with its range and count."""
    head = f"<figure id=\"{ident}\"><figcaption>{_e(title)} ({_e(unit)}, {len(values)} answered cases)</figcaption>"
    if not values:
        return head + "<p class=\"muted\">no data</p></figure>"
    lo, hi = min(values), max(values)
    nbins = HIST_BINS if hi > lo else 1
    width = (hi - lo) / nbins if hi > lo else 1.0
    counts = [0] * nbins
    for v in values:
        counts[min(int((v - lo) / width), nbins - 1)] += 1
    W, H, L, B = 420, 160, 40, 28  # svg size, left and bottom margins
    pw, ph = W - L - 8, H - B - 8
    top = max(counts)
    bw = pw / nbins
    out = [f"<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{_e(title)}\">",
           f"<line class=\"axis\" x1=\"{L}\" y1=\"{8 + ph}\" x2=\"{L + pw}\" y2=\"{8 + ph}\"/>",
           f"<line class=\"axis\" x1=\"{L}\" y1=\"8\" x2=\"{L}\" y2=\"{8 + ph}\"/>"]
    for i, n in enumerate(counts):
        if not n:
            continue
        h = ph * n / top
        a, z = lo + i * width, (lo + (i + 1) * width) if hi > lo else hi
        out.append(f"<rect class=\"bar\" x=\"{L + i * bw + 0.5:.1f}\" y=\"{8 + ph - h:.1f}\" width=\"{max(bw - 1, 1):.1f}\" "
                   f"height=\"{h:.1f}\"><title>{_e(fmt(a))}–{_e(fmt(z))} {_e(unit)}: {n} cases</title></rect>")
    for j, (name, x) in enumerate(marks):
        if lo <= x <= hi and hi > lo:
            px = L + pw * (x - lo) / (hi - lo)
            out.append(f"<line class=\"mark\" x1=\"{px:.1f}\" y1=\"8\" x2=\"{px:.1f}\" y2=\"{8 + ph}\"><title>{_e(name)} "
                       f"{_e(fmt(x))} {_e(unit)}</title></line><text class=\"mark\" x=\"{px + 2:.1f}\" y=\"{18 + 12 * j}\">{_e(name)}</text>")
    out += [f"<text x=\"{L}\" y=\"{H - 8}\">{_e(fmt(lo))}</text>",
            f"<text x=\"{L + pw}\" y=\"{H - 8}\" text-anchor=\"end\">{_e(fmt(hi))}</text>",
            f"<text x=\"{L - 4}\" y=\"16\" text-anchor=\"end\">{top}</text>",
            f"<text x=\"{L - 4}\" y=\"{8 + ph}\" text-anchor=\"end\">0</text>", "</svg>"]
    return head + "".join(out) + "</figure>"


# --------------------------------------------------------------------------- the cases (JSON, built by the JS)

def _regressed(record: RunRecord, given: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    if given is not None:
        return {str(k): tuple(v) for k, v in given.items()}
    b = record.baseline
    return {c.id: tuple(c.reasons) for c in (b.regressed if b is not None else ())}


def regressed_from_comparison(comparison: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]] | None:
    """id -> reasons of every regressed case in a comparison.json (None when there is none)."""
    if not comparison or not isinstance(comparison.get("regressed"), list):
        return None
    return {str(c["id"]): tuple(c.get("reasons") or ()) for c in comparison["regressed"] if isinstance(c, Mapping)}


def _num(x: Any, digits: int | None = None) -> float | int | None:
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    if isinstance(x, int) or float(x).is_integer():
        return int(x)
    return round(x, digits) if digits is not None else float(f"{x:.6g}")


def _flaky(record: RunRecord) -> str:
    """Every case whose sampled repeats disagree, least stable first."""
    cases = flaky_cases(record)
    if not cases:
        return ""
    rows = [(f"<code>{_e(cid)}</code>", _e(share), _e(verdict)) for cid, share, verdict in map(flaky_row, cases)]
    note = (f"<p class=\"muted\">Their sampled repeats disagree; a case's verdict follows eval.pass_policy "
            f"<code>{_e(record.execution.pass_policy)}</code>. Least stable first.</p>")
    return _section(f"Flaky cases ({len(cases)})", note + _table(("case", "repeats passed", "verdict"), rows), "flaky")


def _case_row(r: CaseResult, reasons: Sequence[str] | None) -> list[Any]:
    retrieved = [[_num(c.get("rank")), c.get("chunk_id"), c.get("doc_id"), _num(c.get("score"), 4),
                  None if c.get("used") is None else int(bool(c.get("used")))] for c in r.retrieved]
    return [r.id, r.question, r.answer, list(r.answers), _num(r.em, 4), _num(r.f1, 4), _num(r.latency_ms, 2),
            r.input_tokens, r.output_tokens, _num(r.cost_usd), r.error, r.prompt, retrieved,
            None if r.safety_flags is None else list(r.safety_flags), int(r.blocked), int(r.critical),
            _num(r.toxicity, 4), list(r.expect_failures), None if reasons is None else list(reasons),
            _num(r.hit_at_k, 4), _num(r.reciprocal_rank, 4), None if r.cached is None else int(r.cached),
            None if r.pass_rate is None else [r.repeats.get("passed"), r.repeats.get("n"),
                                              [a if a is None else str(a) for a in r.repeats.get("answers", ())]]]


def _cases_json(results: Sequence[CaseResult], changes: Mapping[str, Sequence[str]]) -> str:
    doc = {"fields": FIELDS, "retrieved_fields": RETRIEVED_FIELDS,
           "rows": [_case_row(r, changes.get(r.id)) for r in results]}
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # inside <script> no `<` may start a tag, comment or `</script>`; U+2028/2029 are escaped for old JS parsers.
    # `\u003c` is the JSON escape of `<`, stricter than `<\/` (it also covers `<!--`).
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _cases_section(record: RunRecord, changes: Mapping[str, Sequence[str]]) -> str:
    n = len(record.results)
    page = 0 if n <= PAGE_ALL_UP_TO else 250
    failed = sum(1 for r in record.results if r.error is not None or r.expect_failures)
    flagged = sum(1 for r in record.results if r.safety_flags or r.blocked)
    regressed = sum(1 for r in record.results if r.id in changes)
    controls = (
        "<div class=\"controls\">"
        "<input type=\"search\" id=\"q\" placeholder=\"search id, question, answer, gold, error, flags, doc ids\" "
        "aria-label=\"search cases\" size=\"48\">"
        f"<label><input type=\"checkbox\" id=\"f-failed\"> failed ({failed})</label>"
        f"<label><input type=\"checkbox\" id=\"f-regressed\"{'' if record.baseline else ' disabled'}> "
        f"regressed ({regressed})</label>"
        f"<label><input type=\"checkbox\" id=\"f-flagged\"> flagged ({flagged})</label>"
        f"<span id=\"count\" aria-live=\"polite\">{n} cases</span></div>"
        "<div class=\"pager\"><button type=\"button\" id=\"prev\">&larr; previous</button> <span id=\"page\"></span> "
        "<button type=\"button\" id=\"next\">next &rarr;</button> <label>rows per page <select id=\"size\">"
        + "".join(f"<option value=\"{v}\"{' selected' if v == page else ''}>{label}</option>"
                  for v, label in ((100, "100"), (250, "250"), (1000, "1000"), (0, "all")))
        + "</select></label></div>")
    cols = (("i", "#"), ("id", "case"), ("pass", "result"), ("em", "EM"), ("f1", "F1"), ("latency_ms", "latency ms"),
            ("tokens", "tokens in/out"), ("cost_usd", "cost USD"), ("flags", "flags"), ("regressed", "regressed"))
    head = "".join(f"<th scope=\"col\" data-key=\"{k}\" aria-sort=\"none\"><button type=\"button\">{_e(label)}</button></th>"
                   for k, label in cols)
    table = (f"<table id=\"cases\" class=\"cases\"><thead><tr>{head}</tr></thead><tbody id=\"cases-body\"></tbody></table>"
             "<noscript><p>The case table needs JavaScript; the same data is in results.jsonl.</p></noscript>")
    hint = ("<p class=\"muted\">Click a header to sort, a case to open its question, answer, gold answers, rendered "
            "prompt, retrieved chunks and safety flags. Filters combine (all checked must hold); large runs show a page at a time.</p>")
    return _section(f"Cases ({n})", controls + hint + table, "cases-section")

