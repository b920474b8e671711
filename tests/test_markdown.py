"""The markdown summary (job summary and PR comment): rendered from records built here and read back with a real
CommonMark + tables renderer (markdown-it-py, in the lock), so escaping is checked the way a reader sees it; then a
real session with `--genai-markdown` and `$GITHUB_STEP_SUMMARY`, a baseline, a failing case and planted PII."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conftest import Project
from pytest_genai.report import markdown as md
from pytest_genai.report.markdown import github_report_hint, render_markdown
from pytest_genai.runlog import BaselineSummary, CaseChangeSummary, Gate, Provenance, RunRecord, Tracking
from pytest_genai.stats.ci import CI
from pytest_genai.types import CaseResult


# --------------------------------------------------------------------------- reading the markdown back

class _Tables(HTMLParser):
    """The rendered tables: a list per table of rows of (cell text, tags seen inside the cell)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[tuple[str, set[str]]]]] = []
        self.links: list[str] = []
        self._cell: list[str] | None = None
        self._tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._tags = [], set()
        elif self._cell is not None:
            self._tags.add(tag)
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(("".join(self._cell), self._tags))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rendered(text: str) -> tuple[str, _Tables]:
    from markdown_it import MarkdownIt

    page = MarkdownIt("commonmark").enable("table").render(text)
    parser = _Tables()
    parser.feed(page)
    return page, parser


def table_after(text: str, heading: str) -> list[list[str]]:
    """The rows (cell texts) of the first table after `### heading`."""
    part = text.split(f"### {heading}", 1)[1]
    _, parsed = rendered(part)
    return [[c for c, _ in row] for row in parsed.tables[0]]


# --------------------------------------------------------------------------- records built here

def case(cid: str, *, em: float = 1.0, f1: float = 1.0, error: str | None = None,
         expect: tuple[str, ...] = ()) -> CaseResult:
    return CaseResult(cid, f"question of {cid}?", None if error else "answer", ("answer",), em, f1, 12.5, 10, 2,
                      0.0001, 7, error=error, expect_failures=expect)


def record(results: tuple[CaseResult, ...] = (), *, gates: tuple[Gate, ...] = (Gate("f1", ">= 0.5", 0.8, True),),
           baseline: BaselineSummary | None = None, **over: Any) -> RunRecord:
    results = results or (case("ok1"), case("ok2"), case("bad", em=0.0, f1=0.2, error="ValueError: no\nRuntimeError: boom"))
    base = RunRecord(
        2, "complete", "2026-12-01T10:00:00Z", "2026-12-01T10:01:00Z",
        Provenance(config_path="genai.yaml", config_hash="c0ffee" + "1" * 58, pipeline="builtin:rag", seed=7,
                   prompt_id="rag_qa", prompt_version="3", eval_set_hash="e5e7" + "2" * 60, git_commit="abcdef0123" + "3" * 30,
                   git_dirty=True),
        metrics={"cases_total": float(len(results)), "cases_evaluated": float(len(results)), "em": 0.66, "f1": 0.8,
                 "latency_p95_ms": 850.0, "error_rate": 1 / 3, "env_drift": 0.0},
        metric_units={"cases_total": "cases", "cases_evaluated": "cases", "latency_p95_ms": "ms"},
        gates=gates, cis={"f1": CI(0.7, 0.9, 0.8, 0.1, len(results))}, ci_confidence=0.95, ci_resamples=2000,
        tracking=Tracking(uri="sqlite:///mlflow.db", run_id="f" * 32), baseline=baseline, results=results)
    return replace(base, **over)


def with_baseline(regressed: int = 1) -> BaselineSummary:
    return BaselineSummary(ref="runs/base", source="run folder", cases_paired=3, baseline_metrics={"f1": 0.9, "em": 0.9},
                           deltas={"f1": CI(-0.2, -0.02, -0.1, 0.09, 3), "em": CI(-0.5, 0.1, -0.24, 0.3, 3),
                                   "latency_p95_ms": CI(-300.0, -100.0, -200.0, 100.0, 3)},
                           mcnemar_p={"em": 0.25}, regressed_count=regressed, improved_count=0,
                           regressed=tuple(CaseChangeSummary(f"r{i}", ("pass → fail", "F1 1 → 0.2"))
                                           for i in range(min(regressed, 10))))


# --------------------------------------------------------------------------- content

def test_summary_holds_verdict_provenance_gates_metrics_failing_cases_and_where_the_report_is() -> None:
    rec = record(gates=(Gate("f1", ">= 0.5", 0.8, True), Gate("error_rate", "== 0", 1 / 3, False),
                        Gate("f1", ">= baseline - 0.02", 0.8, False, "skipped: no baseline", True)))
    text = render_markdown(rec, run_dir="runs/20261201-100000-c0ffee11", report_hint="artifact `genai-results`")
    assert text.startswith("## ❌ pytest-genai: gates failed\n")
    assert "3 of 3 cases · 1 failing · gates: 2 checked, 1 skipped" in text
    assert ("pipeline `builtin:rag` · prompt `rag_qa@3` · eval set `e5e722222222` · commit `abcdef01` (dirty) · "
            "config `c0ffee111111` · MLflow run `" + "f" * 32 + "`") in text
    gates = table_after(text, "Gates")
    assert gates[0] == ["metric", "rule", "value", "verdict"]
    assert gates[1:] == [["f1", ">= 0.5", "0.8", "✅ pass"], ["error_rate", "== 0", "0.3333", "❌ FAIL"],
                         ["f1", ">= baseline - 0.02", "0.8", "⏭️ skipped (no baseline)"]]
    metrics = table_after(text, "Metrics")
    assert metrics[0] == ["metric", "value", "unit", "95% CI", "better"]  # no baseline: no delta columns
    by_name = {row[0]: row for row in metrics[1:]}
    assert list(by_name) == ["em", "f1", "latency_p95_ms", "error_rate"]  # the headline; facts go in <details>
    assert by_name["f1"] == ["f1", "0.8", "", "[0.7, 0.9] ±0.1", "higher"]
    assert by_name["latency_p95_ms"][2] == "ms" and by_name["latency_p95_ms"][-1] == "lower"
    assert "<details><summary>all metrics (7)</summary>" in text and "`cases_total`" in text
    assert text.rstrip().endswith("</details>")  # the collapsed table goes last: a cut takes it first
    failing = table_after(text, "Failing cases (1)")
    assert failing == [["case", "EM", "F1", "error"], ["bad", "0", "0.2", "RuntimeError: boom"]]
    assert "HTML report: `report.html` in the run folder `runs/20261201-100000-c0ffee11`; artifact `genai-results`." in text
    assert "### Regressed" not in text  # no baseline asked for


def test_baseline_deltas_with_their_paired_ci_and_the_regressed_cases() -> None:
    comparison = {"regressed": [{"id": f"r{i}", "reasons": ["pass → fail"], "question": "q"} for i in range(25)]}
    text = render_markdown(record(baseline=with_baseline(25)), comparison)
    assert "Baseline `runs/base (run folder)`: 3 cases paired, em McNemar p=0.25, 25 regressed, 0 improved." in text
    metrics = table_after(text, "Metrics")
    assert metrics[0] == ["metric", "value", "unit", "95% CI", "baseline", "delta (paired CI)", "better"]
    by_name = {row[0]: row for row in metrics[1:]}
    assert by_name["f1"][4:] == ["0.9", "-0.1 [-0.2, -0.02] ±0.09 ❌ worse", "higher"]
    assert by_name["em"][5] == "-0.24 [-0.5, 0.1] ±0.3"  # its CI holds 0: neither better nor worse
    assert by_name["latency_p95_ms"][5].endswith("✅ better")  # lower is better
    regressed = table_after(text, "Regressed cases (25)")
    assert [r[0] for r in regressed[1:]] == [f"r{i}" for i in range(10)]
    assert "… and 15 more (all in comparison.json)" in text
    # without comparison.json: the record's own top 10, and the count it holds
    alone = render_markdown(record(baseline=with_baseline(25)))
    assert [r[0] for r in table_after(alone, "Regressed cases (25)")[1:]] == [f"r{i}" for i in range(10)]
    assert "… and 15 more (all in comparison.json)" in alone
    none = render_markdown(record(baseline=with_baseline(0)))
    assert "### Regressed cases\n\nNone against the baseline." in none
    missing = render_markdown(record(baseline=BaselineSummary(ref="models:/m@production", note="no alias production yet")))
    assert "Baseline: none (`no alias production yet`); baseline gates skipped." in missing


@pytest.mark.parametrize("over, heading", [
    ({}, "## ✅ pytest-genai: gates passed\n"),
    ({"gates": ()}, "## ✅ pytest-genai: passed (no gates)\n"),
    ({"status": "partial", "gates_enforced": False, "gates": (Gate("f1", ">= 0.9", 0.8, False),)},
     "## ⚠️ pytest-genai: gates not enforced (they fail) · partial run\n"),
    ({"errors": ("the pipeline did not build on any worker",)}, "## ❌ pytest-genai: failed (run errors)\n"),
])
def test_heading_says_passed_failed_or_not_enforced_and_the_status(over: dict[str, Any], heading: str) -> None:
    text = render_markdown(record(**over))
    assert text.startswith(heading), text[:200]
    if over.get("errors"):
        assert "### Run errors\n\n- `the pipeline did not build on any worker`" in text
    if over.get("status") == "partial":
        assert "not enforced: partial run" in text and "`--genai-enforce-gates`" in text


def test_failing_cases_stop_at_ten_with_the_count_of_the_rest() -> None:
    results = tuple(case(f"c{i:03d}", em=0.0, f1=0.0, error=f"TimeoutError: {i}") for i in range(37)) + (case("fine"),)
    text = render_markdown(record(results))
    rows = table_after(text, "Failing cases (37)")
    assert [r[0] for r in rows[1:]] == [f"c{i:03d}" for i in range(10)]
    assert "… and 27 more (all in the report)" in text
    expect = render_markdown(record((case("x", expect=("contains 'Paris'", "max_words 3")),)))
    assert table_after(expect, "Failing cases (1)")[1] == ["x", "1", "1", "contains 'Paris'; max_words 3"]


def test_a_gate_failed_on_an_aggregate_lists_the_lowest_scoring_cases() -> None:
    results = (case("good"), case("weak", em=0.0, f1=0.3), case("weakest", em=0.0, f1=0.1))
    failed = render_markdown(record(results, gates=(Gate("em", ">= 0.9", 0.33, False),)))
    assert "Failing cases" not in failed  # every case passed its item
    rows = table_after(failed, "Lowest-scoring cases (no case failed; a gate on an aggregate did)")
    assert [r[:3] for r in rows[1:]] == [["weakest", "0", "0.1"], ["weak", "0", "0.3"], ["good", "1", "1"]]
    assert "Lowest-scoring" not in render_markdown(record(results))  # gates passed: nothing to point at


# --------------------------------------------------------------------------- escaping

NASTY = "a|b`c``d\nnext <EMAIL:0123456789ab> @octocat [x](https://evil.example) **bold** <img src=x>"


def test_run_data_is_escaped_to_literal_text_in_its_cell() -> None:
    results = (case(NASTY, em=0.0, f1=0.0, error="Traceback\n  frame\n" + NASTY.replace("\n", "\t")), case("ok"))
    gates = (Gate("f1", ">= 0.5", 0.1, False, "value <0.5> | `x`"),)
    rec = record(results, gates=gates, errors=(NASTY,),
                 baseline=replace(with_baseline(1), regressed=(CaseChangeSummary(NASTY, (NASTY,)),)))
    text = render_markdown(rec, run_dir="runs/a|b")
    page, parsed = rendered(text)
    flat = NASTY.replace("\n", " ")
    for heading in ("Failing cases (1)", "Regressed cases (1)"):
        rows = table_after(text, heading)
        assert all(len(row) == len(rows[0]) for row in rows), rows  # no pipe split a cell
        assert rows[1][0] == flat
    assert table_after(text, "Failing cases (1)")[1][3] == flat
    assert table_after(text, "Regressed cases (1)")[1][1] == flat
    assert table_after(text, "Gates")[1][3] == "❌ FAIL (value <0.5> | `x`)"
    # nothing of it became markup: no link, image, emphasis or raw tag; the placeholder stays visible
    assert parsed.links == []
    assert "<img" not in page and "<strong>bold</strong>" not in page and "**bold**" in page and "<EMAIL" not in page
    assert "&lt;EMAIL:0123456789ab&gt;" in page
    assert all(not (tags - {"code"}) for table in parsed.tables for row in table for _, tags in row)
    assert "<code>runs/a|b</code>" in page
    # a mention is only ever inside a code span (GitHub notifies nobody from code)
    assert "@octocat" in page and "@octocat" not in re.sub(r"<code>.*?</code>", "", page, flags=re.S)


def test_code_spans_and_plain_text_escape_what_markdown_would_read() -> None:
    assert md.code("x") == "`x`"
    assert md.code("a`b") == "`` a`b ``"
    assert md.code("``x") == "``` ``x ```"
    assert md.code("a|b") == "`a|b`"  # `_table` escapes pipes: outside a table `\\|` would show
    assert md.code("one\ntwo\r\n  three") == "`one two three`"
    assert md.code("") == "" and md.code(None) == ""
    assert md.code("x" * 300, 10) == "`" + "x" * 9 + "…`"
    assert md.text("<b> & *x* [y] a|b") == "&lt;b&gt; &amp; \\*x\\* \\[y\\] a|b"
    assert md._table(("h",), [[md.code("a|b")], [md.text("c|d")]], 5, "") == ["| h |", "|---|", "| `a\\|b` |", "| c\\|d |"]


# --------------------------------------------------------------------------- length

def test_long_runs_stay_under_the_comment_limit_and_close_what_they_open() -> None:
    names = [f"metric_{i:04d}_" + "n" * 100 for i in range(400)]
    metrics = {n: float(i) + 0.123456 for i, n in enumerate(names)}
    gates = tuple(Gate(n, ">= " + "9" * 110, 1.0, False, "r" * 300) for n in names[:200])
    results = tuple(case(f"case-{i}-" + "i" * 300, em=0.0, f1=0.0, error="E" * 5000) for i in range(5000))
    rec = record(results, gates=gates, metrics=metrics, errors=tuple("boom " * 400 for _ in range(50)),
                 cis={n: CI(0.0, 1.0, 0.5, 0.5, 3) for n in names})
    text = render_markdown(rec, run_dir="runs/x")
    assert len(text) <= md.MAX_CHARS < 65536
    assert text.count("<details>") == text.count("</details>")
    _, parsed = rendered(text)
    assert all(len(row) == len(table[0]) for table in parsed.tables for row in table)
    assert "… and 150 more gates" in text and "… and 40 more (run.json)" in text
    assert "summary cut at 50,000 characters" in text  # the collapsed table did not fit: said so
    assert "### Failing cases (5000)" in text and "… and 4990 more (all in the report)" in text and "### Report" in text


def test_a_cut_inside_the_collapsed_metrics_closes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    full = render_markdown(record())
    start = full.index("<details>")
    monkeypatch.setattr(md, "MAX_CHARS", start + 300)
    text = render_markdown(record())
    assert len(text) <= start + 300 and "<details>" in text and text.count("</details>") == 1
    assert text.endswith("… summary cut at {:,} characters: the HTML report and run.json hold the rest.\n".format(start + 300))


def test_github_report_hint_links_the_workflow_run_only_from_well_formed_variables() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/evals",
           "GITHUB_RUN_ID": "123456"}
    assert github_report_hint({}) is None
    assert github_report_hint(env) == ("artifact `genai-results` of "
                                       "[workflow run 123456](https://github.com/acme/evals/actions/runs/123456)")
    assert github_report_hint({**env, "GITHUB_REPOSITORY": "acme/evals) [x](https://evil"}) == "artifact `genai-results`"
    assert github_report_hint({**env, "GITHUB_SERVER_URL": "javascript:alert(1)"}) == "artifact `genai-results`"


# --------------------------------------------------------------------------- a real session

MD_PIPELINE = '''
from pytest_genai import Answer

def factory(config):
    broken = config.get("llm.model_id") == "bad"
    def pipeline(case):
        if broken and case.id == "mail":
            raise RuntimeError(f"cannot answer {case.question}")
        return Answer(text=case.context.split()[0])
    return pipeline
'''
EMAIL = "alice.smith@example.com"


@pytest.fixture
def md_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    from conftest import CASES

    project.pytester.makepyfile(genai_md_pipeline=MD_PIPELINE)
    project.write_cases(CASES + [{"id": "mail", "question": f"Which team does {EMAIL} work in?", "answers": ["Sales"],
                                  "context": "Sales is where they work."}])
    project.config.update({"pipeline": "genai_md_pipeline:factory", "gates": {"f1": ">= 0.5", "em": ">= baseline - 0.1"}})
    for var in ("GITHUB_ACTIONS", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    return project


def test_session_writes_the_summary_to_the_flag_and_appends_to_the_step_summary(
        md_project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = md_project
    step = tmp_path / "step-summary.md"
    step.write_text("earlier step\n", "utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    p.write_config("base.yaml", tracking__enabled=False, llm__model_id="good")
    assert p.run("--genai-config", "base.yaml").ret == 0
    base_dir = p.run_dirs()[-1]
    p.write_config("cand.yaml", tracking__enabled=False, llm__model_id="bad")
    result = p.run("--genai-config", "cand.yaml", "--genai-baseline", str(base_dir), "--genai-markdown", "out/summary.md")
    out = result.stdout.str()
    assert result.ret == 1, out  # the mail case fails its item
    assert "markdown summary: out/summary.md" in out
    run_dir = p.run_dirs()[-1]
    mine = (p.path / "out" / "summary.md").read_text("utf-8")
    both = step.read_text("utf-8")
    assert both.startswith("earlier step\n\n## ✅ pytest-genai: gates passed\n")  # the baseline run appended first
    assert len(re.findall(r"(?m)^## ", both)) == 2 and both.endswith("\n" + mine)
    assert EMAIL not in both
    assert mine.startswith("## ❌ pytest-genai: gates failed\n")  # em fell by more than the margin
    assert "| metric | rule | value | verdict |" in mine
    assert "| `f1` | `>= 0.5` |" in mine and "| `em` | `>= baseline - 0.1` |" in mine
    assert re.search(r"\| `mail` \| 0 \| 0 \| `RuntimeError: cannot answer Which team does <EMAIL:[0-9a-f]+> work in\?` \|",
                     mine), mine
    assert "### Regressed cases (1)" in mine and "| `mail` | `pass → fail" in mine
    assert f"`{run_dir.relative_to(p.path)}`" in mine
    assert EMAIL not in mine
    comparison = json.loads((run_dir / "comparison.json").read_text("utf-8"))
    assert [c["id"] for c in comparison["regressed"]] == ["mail"]


def test_an_unwritable_markdown_path_is_refused_at_start_and_a_step_summary_only_warns(
        md_project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = md_project
    step = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    (p.path / "blocker").write_text("a file, not a folder", "utf-8")
    p.write_config(tracking__enabled=False, llm__model_id="good", gates={"f1": ">= 0.5"})
    # a path that cannot be written is refused before the first case runs, naming it
    result = p.run("--genai-config", "genai.yaml", "--genai-markdown", "blocker/summary.md", subprocess=True)
    err = result.stderr.str() + result.stdout.str()
    assert result.ret == 4, err
    assert re.search(r"--genai-markdown blocker/summary\.md: cannot write \S*blocker/summary\.md: \S*blocker is not a "
                     r"folder", err), err
    assert p.run_dirs() == [] and "passed" not in result.stdout.str()
    # a step summary that cannot be written is one line, not a failure
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(p.path / "blocker" / "step.md"))
    again = p.run("--genai-config", "genai.yaml")
    assert again.ret == 0, again.stdout.str()
    again.stdout.fnmatch_lines(["step summary: could not append to $GITHUB_STEP_SUMMARY (*blocker*step.md): *Error*"])
