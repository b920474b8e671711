"""The static HTML report opened in a real headless Chromium (Debian's `chromium`; the fixture fails, never skips,
without it): no console errors, no network requests, every case in the table, filters, search, sort and details
work, an XSS answer stays text, and 10,000 cases stay under 5 MB. Chromium is driven over the DevTools Protocol
through `--remote-debugging-pipe` (stdlib only: no websocket library)."""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import Project
from pytest_genai.report.html import render_html
from pytest_genai.runlog import BaselineSummary, CaseChangeSummary, Gate, Provenance, RunRecord
from pytest_genai.stats.ci import CI
from pytest_genai.types import CaseResult

# --------------------------------------------------------------------------- a minimal CDP client

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--host-resolver-rules=MAP * ~NOTFOUND")


def chromium_path() -> str | None:
    """Debian's chromium (what .ci/run installs); a Chrome of a hosted runner does as well."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class CDPError(Exception):
    pass


class Browser:
    """One headless Chromium; `page(url)` opens a tab with Runtime, Log, Network and Page events recorded."""

    def __init__(self, exe: str, profile: Path) -> None:
        cmd_r, cmd_w = os.pipe()  # we write commands, the browser reads them on fd 3
        ev_r, ev_w = os.pipe()  # the browser writes on fd 4, we read

        def child_fds() -> None:  # dup first: an fd already numbered 3 or 4 would keep its close-on-exec flag
            a, b = os.dup(cmd_r), os.dup(ev_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                                     preexec_fn=child_fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(ev_w)
        self._w, self._r = cmd_w, ev_r
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for m in self._read(deadline):
                if m.get("id") == self._next:
                    if "error" in m:
                        raise CDPError(f"{method}: {m['error']}")
                    return m.get("result", {})
                self.events.append(m)

    def pump(self, seconds: float) -> None:
        """Collect events for a while (nothing is sent)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events += self._read(deadline)
        except TimeoutError:
            pass

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise CDPError(f"chromium exited ({self.proc.poll()})")
            self._buf += chunk
        *done, self._buf = self._buf.split(b"\0")
        return [json.loads(x) for x in done]

    def page(self, url: str, timeout: float = 60) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.send(f"{domain}.enable")
        page.send("Page.navigate", {"url": url})
        page.wait_event("Page.loadEventFired", timeout)
        return page

    def close(self) -> None:
        try:
            os.write(self._w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)
        finally:
            os.close(self._w)
            os.close(self._r)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        return self.browser.send(method, params, self.session, timeout)

    def events(self, method: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.browser.events if e.get("sessionId") == self.session
                and (method is None or e.get("method") == method)]

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(method)
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.browser.pump(0.05)

    def js(self, expression: str, timeout: float = 30) -> Any:
        """The value of a JS expression (promises awaited); a thrown exception fails here."""
        out = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                        timeout)
        if "exceptionDetails" in out:
            raise CDPError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} still false after {timeout} s")
            time.sleep(0.05)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, log errors (CSP violations land there) and dialogs."""
        out = []
        for e in self.events():
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p.get('args', [])]}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails')}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == "Page.javascriptDialogOpening":
                out.append(f"dialog: {p.get('message')}")
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events("Network.requestWillBeSent")]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    exe = chromium_path()
    if exe is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (.ci/run installs it when missing)")
    b = Browser(exe, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield b
    finally:
        b.close()


def open_report(browser: Browser, path: Path, timeout: float = 60) -> Page:
    page = browser.page(path.resolve().as_uri(), timeout)
    page.wait_for("document.body.dataset.ready === '1'", timeout)
    return page


def assert_clean(page: Page, path: Path) -> None:
    """No console error or warning, no exception, no CSP violation, no dialog; the one request is the file itself."""
    page.browser.pump(0.3)
    assert page.problems() == []
    assert set(page.requests()) == {path.resolve().as_uri()}


def shown(page: Page) -> int:
    return int(page.js("document.body.dataset.shown"))


def visible_ids(page: Page) -> list[str]:
    return page.js("Array.from(document.querySelectorAll('#cases-body tr.case')).map(function (r) { return r.dataset.id; })")


def toggle_filter(page: Page, name: str) -> None:
    page.js(f"document.getElementById('f-{name}').click()")


def search(page: Page, text: str) -> int:
    """Type into the search box (the table updates after a short debounce) and return how many cases match."""
    page.js(f"(function () {{ var q = document.getElementById('q'); q.value = {json.dumps(text)}; "
            "q.dispatchEvent(new Event('input')); })()")
    page.wait_for(f"document.body.dataset.q === {json.dumps(text.strip().lower())}")
    return shown(page)


def embedded(html_text: str) -> dict[str, Any]:
    start = html_text.index('<script type="application/json" id="genai-cases">') + len('<script type="application/json" id="genai-cases">')
    return json.loads(html_text[start:html_text.index("</script>", start)])


# --------------------------------------------------------------------------- a run through the real plugin

XSS = '<img src=x onerror="window.__pwned=1">'
SCRIPT = "</script><script>window.__pwned=2</script>"

PIPELINE = f'''
from pytest_genai import Answer, Usage

def factory(config):
    def pipeline(case):
        if case.id == "boom":
            raise RuntimeError("the model server said no")
        if case.id == "xss":
            text = {XSS!r}
        elif case.id == "mail":
            text = "write to jane.doe@example.com"
        else:
            text = case.context.split()[0]
        retrieved = [{{"chunk_id": case.id + "-doc#0", "doc_id": case.id + "-doc", "score": 0.91, "rank": 1, "used": True}},
                     {{"chunk_id": "other#3", "doc_id": "other", "score": 0.42, "rank": 2, "used": False}}]
        return Answer(text=text, contexts=(case.context,), usage=Usage(5, 2),
                      prompt="Context: " + case.context + "\\nQ: " + case.question, metadata={{"retrieved": retrieved}})
    return pipeline
'''

PLUGIN_CASES = [
    {"id": "paris", "question": "What is the capital of France?", "answers": ["Paris"], "context": "Paris is the capital of France."},
    {"id": "rome", "question": "What is the capital of Italy?", "answers": ["Rome"], "context": "Rome is the capital of Italy."},
    {"id": "xss", "question": "Say " + SCRIPT + " \u2028 please", "answers": ["safe"], "context": "safe text"},
    {"id": "mail", "question": "Who do I write to?", "answers": ["the office"], "context": "the office"},
    {"id": "boom", "question": "Will this fail?", "answers": ["no"], "context": "no"},
]


def test_plugin_run_writes_a_report_that_renders_offline_filters_and_keeps_answers_as_text(
        project: Project, browser: Browser, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    project.pytester.makepyfile(genai_report_pipeline=PIPELINE)
    project.write_cases(PLUGIN_CASES)
    project.write_config(pipeline="genai_report_pipeline:factory", gates={"f1": ">= 0.3", "error_rate": "== 0"})
    result = project.run("--genai-config", "genai.yaml")
    result.assert_outcomes(passed=4, failed=1)
    run_dir = project.run_dirs()[-1]
    report = run_dir / "report.html"
    text = report.read_text("utf-8")
    # logged with the rest of the run folder
    client = MlflowClient(tracking_uri=project.mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("test-exp").experiment_id])[0]
    assert "report.html" in {a.path for a in client.list_artifacts(run.info.run_id)}
    # the record is the sanitized one: no raw e-mail address, and the embedded data is the record's, case for case
    assert "jane.doe@example.com" not in text
    data = embedded(text)
    record = json.loads((run_dir / "run.json").read_text())
    assert [r[0] for r in data["rows"]] == [c["id"] for c in PLUGIN_CASES]
    assert record["provenance"]["config_hash"] in text and record["provenance"]["eval_set_hash"] in text
    assert "\u2028" not in text and text.count("</script>") == 2  # the JSON's and the code's own: the question's is escaped
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text

    page = open_report(browser, report)
    assert shown(page) == 5 and len(visible_ids(page)) == 5
    gates = page.js("Array.from(document.querySelectorAll('table.gates tbody tr')).map(function (r) { return r.innerText; })")
    assert any("error_rate" in g and "FAIL" in g for g in gates) and any(g.startswith("f1") and "pass" in g for g in gates)
    assert page.js("document.getElementById('verdict').textContent") == "gates failed"
    toggle_filter(page, "failed")
    assert visible_ids(page) == ["boom"]
    toggle_filter(page, "failed")
    toggle_filter(page, "flagged")
    assert visible_ids(page) == ["mail"]
    toggle_filter(page, "flagged")
    assert search(page, "capital of italy") == 1 and visible_ids(page) == ["rome"]
    assert search(page, "other#3") == 4  # retrieved chunk ids are searched too (boom retrieved nothing)
    assert search(page, "") == 5
    # the XSS answer and the </script> question open as text, and nothing of theirs ran
    page.js("document.querySelector('tr.case[data-id=xss] td.id button').click()")
    assert page.js("document.querySelector('tr.detail pre.answer').textContent") == XSS
    detail = page.js("document.querySelector('tr.detail').textContent")
    assert SCRIPT in detail and "other#3" in detail and "0.91" in detail and "Context: safe text" in detail
    assert page.js("typeof window.__pwned") == "undefined"
    assert page.js("document.querySelectorAll('img, #cases-body script').length") == 0
    # sorting by F1 (ascending): the failed and wrong answers first
    page.js("document.querySelector('th[data-key=f1] button').click()")
    ids = visible_ids(page)
    assert set(ids[-2:]) == {"paris", "rome"} and page.js("document.querySelector('th[data-key=f1]').getAttribute('aria-sort')") == "ascending"
    assert_clean(page, report)

    # `pytest-genai report`: the run folder and the MLflow run id give the same cases
    from pytest_genai.report import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    out_dir, out_id = tmp_path / "from-dir.html", tmp_path / "from-mlflow.html"
    assert cli.run(parser.parse_args(["report", str(run_dir), "--out", str(out_dir)])) == 0
    assert cli.run(parser.parse_args(["report", run.info.run_id, "--tracking-uri", project.mlflow_uri, "--out", str(out_id)])) == 0
    for out in (out_dir, out_id):
        assert [r[0] for r in embedded(out.read_text("utf-8"))["rows"]] == [c["id"] for c in PLUGIN_CASES]
    assert run.info.run_id in out_id.read_text("utf-8")
    assert cli.run(parser.parse_args(["report", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "x.html")])) == 2


# --------------------------------------------------------------------------- synthetic records

def synthetic(n: int, baseline: bool = False) -> RunRecord:
    """n cases shaped like a RAG run: a prompt, three retrieved chunks; every 50th errors, every 40th is flagged,
    every 400th blocked, every 7th answers with an XSS payload."""
    results = []
    for i in range(n):
        results.append(CaseResult(
            f"c{i:05d}", f"What does section {i} of the handbook say about item {i % 97}?",
            XSS if i % 7 == 3 else f"item {i % 97} is answer {i}", (f"answer {i}",),
            1.0 if i % 3 else 0.0, round((i % 101) / 100, 4), 80.0 + (i % 113) * 7.3, 40 + i % 9, 3 + i % 4,
            0.00001 * (1 + i % 5), i, error="RuntimeError: boom" if i % 50 == 0 else None,
            prompt=f"Answer from the context.\nContext: Item {i} is answer {i}.\nQuestion: What is item {i}?",
            retrieved=tuple({"chunk_id": f"doc{i % 28}#{k}", "doc_id": f"doc{i % 28}", "score": 0.9 - k * 0.1,
                             "rank": k + 1, "used": k < 2} for k in range(3)),
            safety_flags=("EMAIL",) if i % 40 == 1 else (), blocked=i % 400 == 2,
            expect_failures=("contains 'x'",) if i % 125 == 1 else ()))
    summary = None
    if baseline:
        summary = BaselineSummary(ref="models:/m@production", source="registered model", run_id="b" * 32,
                                  model_version="m/3", cases_paired=n, baseline_metrics={"f1": 0.6},
                                  deltas={"f1": CI(-0.05, -0.01, -0.03, 0.02, n)}, mcnemar_p={"em": 0.04},
                                  regressed_count=3, regressed=(CaseChangeSummary("c00004", ("pass → fail",)),))
    return RunRecord(
        2, "complete", "2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z",
        Provenance(config_path="genai.yaml", config_hash="a" * 64, pipeline="builtin:rag", seed=7, prompt_id="rag_qa",
                   prompt_version="1", prompt_hash="c" * 64, eval_set_path="eval_sets/handbook.jsonl",
                   eval_set_hash="e" * 64, index_fingerprint="f" * 16, model_hashes={"llm.model_sha256": "1" * 64},
                   git_commit="0" * 40, git_branch="main", git_dirty=False, python="3.11.2", platform="Linux"),
        metrics={"cases_total": float(n), "em": 0.66, "f1": 0.5, "latency_p50_ms": 480.0, "latency_p95_ms": 850.0},
        metric_units={"cases_total": "cases", "latency_p50_ms": "ms", "latency_p95_ms": "ms"},
        gates=(Gate("f1", ">= 0.4", 0.5, True), Gate("f1", ">= baseline - 0.02", 0.5, False, "delta CI low -0.05"),
               Gate("em", "ci_low >= 0.9", 0.66, False, "skipped: no baseline", True)),
        cis={"f1": CI(0.48, 0.52, 0.5, 0.02, n)}, ci_confidence=0.95, ci_resamples=2000, baseline=summary,
        results=tuple(results))


def test_json_is_escaped_for_a_script_element_and_round_trips() -> None:
    record = synthetic(20)
    odd = CaseResult("odd", "a \u2028 b \u2029 c </script><!-- <script>", "</SCRIPT>", ("<\\/",), 0.0, 0.0, 1.0,
                     0, 0, 0.0, 0, error="x < y && z", prompt="\u2028")
    from dataclasses import replace

    text = render_html(replace(record, results=record.results + (odd,)))
    assert "\u2028" not in text and "\u2029" not in text
    script = text[text.index('id="genai-cases">'):text.index("</script>")]
    assert "<" not in script.split(">", 1)[1]  # not one `<` inside the data element
    row = embedded(text)["rows"][-1]
    assert row[:4] == ["odd", odd.question, "</SCRIPT>", ["<\\/"]] and row[10] == "x < y && z" and row[11] == "\u2028"


def test_regressed_filter_baseline_deltas_and_sorting(browser: Browser, tmp_path: Path) -> None:
    record = synthetic(300, baseline=True)
    report = tmp_path / "report.html"
    # every regressed case (comparison.json), not only the record's most severe few
    report.write_text(render_html(record, {"c00004": ["pass → fail"], "c00010": ["EM 1 → 0"], "c00200": ["F1 0.90 → 0.10 (-0.80)"]}))
    page = open_report(browser, report)
    assert shown(page) == 300 and len(visible_ids(page)) == 300  # up to 500 cases: one page
    metrics = page.js("document.querySelector('table.metrics').innerText")
    assert "baseline" in metrics and "-0.03 [-0.05, -0.01] ±0.02" in metrics
    assert page.js("document.querySelector('table.metrics .delta.fail') !== null")  # an F1 drop the CI tells from noise
    toggle_filter(page, "regressed")
    assert visible_ids(page) == ["c00004", "c00010", "c00200"]
    toggle_filter(page, "failed")
    assert visible_ids(page) == ["c00200"]  # filters combine: regressed and failed (c00200 errored)
    toggle_filter(page, "regressed")
    toggle_filter(page, "failed")
    page.js("document.querySelector('th[data-key=latency_ms] button').click()")
    page.js("document.querySelector('th[data-key=latency_ms] button').click()")  # descending
    lat = {r.id: r.latency_ms for r in record.results}
    ids = visible_ids(page)
    assert [lat[i] for i in ids] == sorted(lat.values(), reverse=True)
    assert page.js("document.querySelectorAll('#hist-latency rect.bar').length") > 1
    assert_clean(page, report)
    # without the full list the record's own regressed case is the one marked
    report.write_text(render_html(record))
    page = open_report(browser, report)
    toggle_filter(page, "regressed")
    assert visible_ids(page) == ["c00004"]
    assert_clean(page, report)


def test_ten_thousand_cases_stay_small_and_every_case_is_in_the_table(browser: Browser, tmp_path: Path) -> None:
    n = 10_000
    record = synthetic(n)
    started = time.perf_counter()
    text = render_html(record)
    render_s = time.perf_counter() - started
    report = tmp_path / "report.html"
    report.write_text(text, "utf-8")
    size = report.stat().st_size
    assert size < 5_000_000, f"{size / 1e6:.2f} MB for {n} cases"
    assert render_s < 5  # the target (< 2 s) is benchmarked in benchmarks/bench_report.py; this catches a blow-up
    started = time.perf_counter()
    page = open_report(browser, report)
    assert time.perf_counter() - started < 30
    assert shown(page) == n and int(page.js("document.body.dataset.pages")) == 40  # 250 a page
    assert page.js("document.querySelectorAll('#cases-body tr').length") == 250  # the DOM holds one page
    # every case is in the table: page through it 1000 at a time
    page.js("(function () { var s = document.getElementById('size'); s.value = '1000'; s.dispatchEvent(new Event('change')); })()")
    seen: list[str] = []
    for p in range(10):
        seen += visible_ids(page)
        if p < 9:
            page.js("document.getElementById('next').click()")
    assert len(seen) == n and set(seen) == {r.id for r in record.results}
    failed = {r.id for r in record.results if r.error is not None or r.expect_failures}
    flagged = {r.id for r in record.results if r.safety_flags or r.blocked}
    toggle_filter(page, "failed")
    assert shown(page) == len(failed) and set(visible_ids(page)) == failed  # 280: one page
    toggle_filter(page, "failed")
    toggle_filter(page, "flagged")
    assert shown(page) == len(flagged) and set(visible_ids(page)) == flagged
    toggle_filter(page, "flagged")
    started = time.perf_counter()
    assert search(page, "c09999") == 1
    assert time.perf_counter() - started < 5
    page.js("document.querySelector('tr.case[data-id=c09999] td.id button').click()")
    assert "Item 9999 is answer 9999." in page.js("document.querySelector('tr.detail pre.prompt').textContent")
    assert page.js("typeof window.__pwned") == "undefined"
    assert_clean(page, report)
