"""results.json is written only by `_util.record` and the tables are rendered from it: provenance on every
entry, hand edits refused, the text outside the markers untouched, and the committed tables up to date.
Run: `.venv/bin/python -m pytest benchmarks/test_render.py -q -p no:cacheprovider`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(HERE))

import _util  # noqa: E402
import render  # noqa: E402

TOX = {"texts": 200, "rounds": 5, "toxicity_flagged": 8, "pii_only_ms_per_answer": 0.05, "per_text_ms_per_answer": 11.6,
       "check_many_ms_per_answer": 0.1, "deferred_ms_per_answer": 0.11, "per_text_added_ms_per_answer": 11.55,
       "check_many_added_ms_per_answer": 0.05, "deferred_added_ms_per_answer": 0.06,
       "speedup_per_text_over_deferred": 105.0, "first_score_median_s": 3.1, "first_score_rounds": 3}
PII = {"per_type": {"EMAIL": {"support": 24, "tp": 23, "fp": 0, "fn": 1, "precision": 1.0, "recall": 23 / 24,
                              "f1": 46 / 47},
                    "micro avg": {"support": 24, "tp": 23, "fp": 0, "fn": 1, "precision": 1.0, "recall": 23 / 24,
                                  "f1": 46 / 47}},
       "exact_set_match": 323, "strings": 329, "redaction_violations": 0, "strings_per_s": 13000.0}
README = "# Title\n\nprose 1.23 stays\n\n<!-- bench:begin -->\nold hand-typed 0.19 ms\n<!-- bench:end -->\n\ntail\n"


def _render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HERE / "render.py"), "--results", str(tmp_path / "results.json"),
                           "--bench-readme", str(tmp_path / "README.md"), *args], capture_output=True, text=True)


def test_record_keeps_provenance_and_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    a = _util.record("toxicity", TOX, command="python bench_toxicity.py", path=path)
    _util.record("startup", {"startup_overhead_ms": 4.9, "startup_with_plugin_ms": 234.0, "startup_without_plugin_ms": 229.1},
                 path=path)
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == _util.SCHEMA_VERSION and set(doc["benchmarks"]) == {"toxicity", "startup"}
    tox = doc["benchmarks"]["toxicity"]
    assert tox == a and tox["command"] == "python bench_toxicity.py" and tox["results"] == TOX
    assert tox["when"].endswith("UTC") and "cores" in tox["machine"] and tox["digest"] == _util.digest(tox)
    assert doc["benchmarks"]["startup"]["command"] == _util.command_line()  # the running command by default
    again = _util.record("toxicity", {**TOX, "deferred_added_ms_per_answer": 0.07}, command="x", path=path)
    assert _util.load_results(path)["toxicity"] == again and "startup" in _util.load_results(path)


def test_legacy_results_are_read_and_marked(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"when": "2026-11-26 08:06 UTC", "machine": "m", "toxicity": TOX}))
    entry = _util.load_results(path)["toxicity"]
    assert entry["command"] == "make bench" and entry["when"] == "2026-11-26 08:06 UTC" and entry["legacy"]
    assert entry["results"] == TOX and entry["digest"] == _util.digest(entry)


def test_render_fills_only_between_the_markers_and_is_idempotent(tmp_path: Path) -> None:
    _util.record("toxicity", TOX, command="python bench_toxicity.py", path=tmp_path / "results.json")
    (tmp_path / "README.md").write_text(README)
    assert _render(tmp_path, "--check").returncode == 1  # the hand-typed block is not what results.json gives
    proc = _render(tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "README.md").read_text()
    head, rest = text.split("<!-- bench:begin -->")
    block, tail = rest.split("<!-- bench:end -->")
    assert head == "# Title\n\nprose 1.23 stays\n\n" and tail == "\n\ntail\n"
    assert "0.19" not in block and "**0.060 ms per answer**" in block and "11.55 ms" in block and "| met |" in block
    assert "[1] `python bench_toxicity.py` at " in block
    assert "not measured yet: run `benchmarks/bench_startup.py`" in block  # no entry, no number
    assert _render(tmp_path, "--check").returncode == 0 and (tmp_path / "README.md").read_text() == text
    # a new recording changes the table: the number comes from results.json, not from the file
    _util.record("toxicity", {**TOX, "deferred_added_ms_per_answer": 0.9}, command="c2", path=tmp_path / "results.json")
    assert _render(tmp_path, "--check").returncode == 1 and _render(tmp_path).returncode == 0
    block = (tmp_path / "README.md").read_text()
    assert "**0.900 ms per answer**" in block and "**not met**" in block and "`c2`" in block


def test_a_hand_edit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    _util.record("toxicity", TOX, command="c", path=path)
    (tmp_path / "README.md").write_text(README)
    path.write_text(path.read_text().replace('"deferred_added_ms_per_answer": 0.06', '"deferred_added_ms_per_answer": 0.01'))
    proc = _render(tmp_path)
    assert proc.returncode == 1 and "'toxicity' does not match its digest" in proc.stderr
    assert (tmp_path / "README.md").read_text() == README


def test_readme_without_markers_gets_the_table_printed(tmp_path: Path) -> None:
    _util.record("toxicity", TOX, command="c", path=tmp_path / "results.json")
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "TOP.md").write_text("# top, no markers\n")
    proc = _render(tmp_path, "--readme", str(tmp_path / "TOP.md"))
    assert proc.returncode == 0 and "no <!-- bench:begin -->" in proc.stdout and "| +0.060 ms per answer batched" in proc.stdout
    assert (tmp_path / "TOP.md").read_text() == "# top, no markers\n"
    (tmp_path / "TOP.md").write_text("# top\n<!-- bench:begin -->\n<!-- bench:end -->\n")
    assert _render(tmp_path, "--readme", str(tmp_path / "TOP.md")).returncode == 0
    assert "| target | result | | source |" in (tmp_path / "TOP.md").read_text()  # the compact table
    (tmp_path / "README.md").write_text("no markers\n")
    assert _render(tmp_path).returncode == 1  # benchmarks/README.md must have them


def test_splice_rejects_broken_markers() -> None:
    with pytest.raises(ValueError, match="expected one"):
        render.splice("<!-- bench:end -->\n<!-- bench:begin -->\n", "x\n")
    with pytest.raises(ValueError, match="expected one"):
        render.splice("<!-- bench:begin -->\n", "x\n")
    assert render.splice("nothing here\n", "x\n") is None


def test_the_docs_page_gets_the_full_table_and_the_pii_detectors(tmp_path: Path) -> None:
    _util.record("pii_detectors", PII, command="python bench_pii_detectors.py", path=tmp_path / "results.json")
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "page.md").write_text("# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n")
    assert _render(tmp_path, "--docs", str(tmp_path / "page.md")).returncode == 0
    page = (tmp_path / "page.md").read_text()
    assert "| target | benchmark | result | | source |" in page and "### PII detectors" in page
    assert "| EMAIL | 24 | 1.000 | 0.958 | 0.979 |" in page and "on 329 labelled strings" in page
    assert _render(tmp_path, "--check", "--docs", str(tmp_path / "page.md")).returncode == 0
    (tmp_path / "page.md").write_text("# no markers\n")
    proc = _render(tmp_path, "--docs", str(tmp_path / "page.md"))
    assert proc.returncode == 1 and "has no <!-- bench:begin -->" in proc.stderr  # the docs page must have them


def test_the_docs_page_gets_the_secrets_per_kind_when_recorded(tmp_path: Path) -> None:
    kinds = {"GITHUB": {"support": 12, "tp": 12, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0},
             "HIGH_ENTROPY": {"support": 0, "tp": 0, "fp": 1, "fn": 0, "precision": 0.0, "recall": None, "f1": None}}
    _util.record("pii_detectors", {**PII, "per_kind": kinds}, command="python bench_pii_detectors.py",
                 path=tmp_path / "results.json")
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "page.md").write_text("# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n")
    assert _render(tmp_path, "--docs", str(tmp_path / "page.md")).returncode == 0
    page = (tmp_path / "page.md").read_text()
    assert "| GITHUB | 12 | 1.000 | 1.000 | 1.000 |" in page and "| HIGH_ENTROPY | 0 | 0.000 | – | – |" in page
    assert "per type, per kind of secret and misses" in (tmp_path / "README.md").read_text()


def test_the_committed_tables_are_what_results_json_gives() -> None:
    """benchmarks/README.md and the docs site's docs/benchmarks.md hold no number results.json lacks."""
    proc = subprocess.run([sys.executable, str(HERE / "render.py"), "--check", "--docs",
                           str(HERE.parent / "docs" / "benchmarks.md")], capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr + "\nfix: re-run the benchmark, or "
                                  ".venv/bin/python benchmarks/render.py --docs docs/benchmarks.md")
    assert "docs/benchmarks.md: up to date" in proc.stdout
