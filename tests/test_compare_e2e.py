"""Fair comparisons end to end: a baseline run, then a candidate that is worse on a planted subset; paired CIs,
non-inferiority gates, regressed cases, pref_win_rate; baselines by run folder, MLflow run id and models:/ alias;
and every bad input a clear error naming the flag or key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import Project

N = 120
PLANTED = {f"q{i:03d}" for i in range(5, N, 10)}  # 12 cases the candidate gets wrong
FIXED = {"q003", "q050"}  # 2 cases the baseline gets wrong and the candidate right

# "good" (the baseline) answers every case but FIXED; "worse" (the candidate) every case but PLANTED.
PIPELINE = '''
from pytest_genai import Answer

PLANTED = %r
FIXED = %r

def factory(config):
    wrong = PLANTED if config.get("llm.model_id") == "worse" else FIXED
    def pipeline(case):
        text = "no idea at all" if case.id in wrong else case.context.split()[0]
        return Answer(text=text, contexts=(case.context,))
    return pipeline
''' % (sorted(PLANTED), sorted(FIXED))


def cases(n: int = N, word: str = "alpha") -> list[dict[str, Any]]:
    return [{"id": f"q{i:03d}", "question": f"Which word names item {i}?", "answers": [f"{word}{i}"],
             "context": f"{word}{i} names item {i}."} for i in range(n)]


@pytest.fixture
def cmp(project: Project) -> Project:
    project.pytester.makepyfile(genai_cmp_pipeline=PIPELINE)
    project.config.update({"pipeline": "genai_cmp_pipeline:factory", "llm": {"model_id": "good"},
                           "gates": {"f1": ">= 0.5"}})
    project.write_cases(cases())
    return project


def baseline_run(p: Project, *args: str, tracking: bool = False) -> Path:
    p.write_config("base.yaml", tracking__enabled=tracking)
    result = p.run("--genai-config", "base.yaml", *args)
    assert result.ret == 0, result.stdout.str()
    return p.run_dirs()[-1]


def candidate(p: Project, gates: dict[str, Any], *args: str, tracking: bool = False, subprocess: bool = False,
              **over: Any) -> pytest.RunResult:
    p.write_config("cand.yaml", llm__model_id="worse", gates=gates, tracking__enabled=tracking, **over)
    return p.run("--genai-config", "cand.yaml", *args, subprocess=subprocess)


def results_of(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}


def test_a_slightly_worse_candidate_fails_non_inferiority_against_an_mlflow_run(cmp: Project) -> None:
    base_dir = baseline_run(cmp, tracking=True)
    base_id = json.loads((base_dir / "run.json").read_text())["tracking"]["run_id"]
    result = candidate(cmp, {"f1": [">= 0.5", ">= baseline - 0.02"], "em": ">= baseline - 0.02"},
                       "--genai-baseline", base_id, tracking=True)
    out = result.stdout.str()
    assert result.ret == 1, out
    run_dir = cmp.run_dirs()[-1]
    record = json.loads((run_dir / "run.json").read_text())
    delta = record["baseline"]["deltas"]["f1"]
    assert delta["high"] < 0  # the paired CI excludes zero
    assert delta["point"] == pytest.approx((len(FIXED) - len(PLANTED)) / N)
    gates = {(g["metric"], g["expression"]): g for g in record["gates"]}
    assert gates[("f1", ">= 0.5")]["passed"] and not gates[("f1", ">= baseline - 0.02")]["passed"]
    assert "GATES FAILED" in out and "f1" in out.split("GATES FAILED")[1]

    comparison = json.loads((run_dir / "comparison.json").read_text())
    regressed = {c["id"] for c in comparison["regressed"]}
    assert regressed == PLANTED and {c["id"] for c in comparison["improved"]} == FIXED
    shown = [ln.strip().split(":")[0] for ln in out.split("regressed: 12 case(s)")[1].splitlines()[1:11]]
    assert set(shown) <= PLANTED and len(shown) == 10  # the terminal names the top 10
    assert "improved: 2 case(s)" in out

    # pref_win_rate against an independent count over the two results files
    cand, base = results_of(run_dir), results_of(base_dir)
    wins = sum(1.0 if cand[i]["f1"] > base[i]["f1"] else 0.5 if cand[i]["f1"] == base[i]["f1"] else 0.0 for i in cand)
    assert record["metrics"]["pref_win_rate"] == pytest.approx(wins / N)
    assert record["cis"]["pref_win_rate"]["low"] <= wins / N <= record["cis"]["pref_win_rate"]["high"]

    run = MlflowClient(tracking_uri=cmp.mlflow_uri).get_run(record["tracking"]["run_id"])
    assert run.data.tags["genai.baseline_run_id"] == base_id and "genai.baseline_intersect" not in run.data.tags
    m = run.data.metrics
    assert m["f1_delta_ci_high"] < 0 and m["f1_delta"] == pytest.approx(delta["point"])
    assert m["f1_ci_low"] < m["f1"] < m["f1_ci_high"] and "em_mcnemar_p" in m and "pref_win_rate_ci_low" in m
    artifacts = {a.path for a in MlflowClient(tracking_uri=cmp.mlflow_uri).list_artifacts(run.info.run_id)}
    assert "comparison.json" in artifacts


def test_the_same_candidate_passes_a_wide_margin_against_a_run_folder(cmp: Project) -> None:
    base_dir = baseline_run(cmp)
    gates = {"f1": [">= baseline - 0.3", "ci_low >= 0.8"], "latency_p95_ms": "<= baseline + 1000",
             "pref_win_rate": ">= 0.4"}
    result = candidate(cmp, gates, "--genai-baseline", str(base_dir))
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "gates passed: 4 of 4" in out
    record = json.loads((cmp.run_dirs()[-1] / "run.json").read_text())
    f1 = record["cis"]["f1"]
    assert f1["low"] < record["metrics"]["f1"] < f1["high"] and f1["n"] == N
    # the CI column and the half-width are shown; `pytest-genai show` renders the same table from run.json
    line = next(ln for ln in out.splitlines() if ln.startswith("f1 "))
    assert f"±{f1['half_width']:.4g}" in line and "vs baseline" in out and "what this eval set can resolve" in out
    from pytest_genai.report.terminal import summary_lines
    from pytest_genai.runlog import read_run

    shown = [ln.text for ln in summary_lines(read_run(cmp.run_dirs()[-1], with_results=False))]
    assert next(t for t in shown if t.startswith("f1 ")) == line.rstrip()

    # under xdist the controller compares (results gathered there): the same numbers
    xdist = candidate(cmp, gates, "--genai-baseline", str(base_dir), "-n", "2", subprocess=True)
    assert xdist.ret == 0, xdist.stdout.str()
    again = json.loads((cmp.run_dirs()[-1] / "run.json").read_text())
    for m in ("f1", "em"):  # latency is measured anew
        assert again["baseline"]["deltas"][m] == record["baseline"]["deltas"][m] and again["cis"][m] == record["cis"][m]
    assert again["metrics"]["pref_win_rate"] == record["metrics"]["pref_win_rate"]


def test_baseline_from_a_models_alias_and_a_missing_alias(cmp: Project) -> None:
    from importlib.metadata import version

    cmp.config["registry"] = {"model_name": "cmp-model", "require_clean_git": False}
    (cmp.path / "tiny.lock").write_text(f"pyyaml=={version('pyyaml')}\n")  # registering needs a lock
    cmp.config["env"] = {"lock_file": "tiny.lock"}
    gates = {"f1": ">= baseline - 0.3"}
    # no production yet: reported, the baseline gate is skipped, not passed
    first = candidate(cmp, gates, "--genai-baseline", "models:/cmp-model@staging", tracking=True)
    out = first.stdout.str()
    assert first.ret == 0, out
    assert "no baseline (models:/cmp-model@staging does not exist yet (no registered model " in out and "skipped (" in out
    record = json.loads((cmp.run_dirs()[-1] / "run.json").read_text())
    assert record["gates"][0]["skipped"] and not record["gates"][0]["passed"]
    required = candidate(cmp, gates, "--genai-baseline", "models:/cmp-model@staging", "--genai-require-baseline")
    assert required.ret == 1 and "a baseline is required" in required.stdout.str()

    baseline_run(cmp, "--genai-register", tracking=True)
    result = candidate(cmp, gates, tracking=True, compare={"baseline": "models:/cmp-model@staging"})
    assert result.ret == 0, result.stdout.str()
    record = json.loads((cmp.run_dirs()[-1] / "run.json").read_text())
    assert record["tags"]["genai.baseline_model_version"] == "cmp-model/1"
    assert record["baseline"]["cases_paired"] == N and record["tags"]["genai.baseline_run_id"]


def test_bad_baselines_are_clear_errors(cmp: Project) -> None:
    cmp.write_cases(cases(8))
    missing = candidate(cmp, {}, "--genai-baseline", "0123456789abcdef0123456789abcdef")
    assert missing.ret == 4
    missing.stderr.fnmatch_lines(["*--genai-baseline 0123456789abcdef0123456789abcdef: *did not return it*"])
    down = candidate(cmp, {}, "--genai-baseline", "0123456789abcdef0123456789abcdef", "--genai-tracking-uri",
                     "http://127.0.0.1:9")
    assert down.ret == 4 and "--genai-baseline" in down.stderr.str() and "127.0.0.1:9" in down.stderr.str()
    nofolder = candidate(cmp, {}, "--genai-baseline", "runs/nope")
    nofolder.stderr.fnmatch_lines(["*--genai-baseline runs/nope: 'runs/nope': no such run folder*"])

    base_dir = baseline_run(cmp)
    base_hash = json.loads((base_dir / "run.json").read_text())["provenance"]["eval_set_hash"]
    cmp.write_cases(cases(8, word="beta"))  # another eval set, same ids
    other = candidate(cmp, {"f1": ">= baseline - 0.5"}, compare={"baseline": str(base_dir)})
    err = other.stderr.str()
    assert other.ret == 4 and "compare.baseline" in err and base_hash in err and "another eval set" in err
    assert "cand.yaml:" in err
    joined = candidate(cmp, {"f1": ">= baseline - 0.5"}, "--genai-baseline", str(base_dir),
                       "--genai-baseline-intersect")
    # run folders are named <second>-<config hash>: two runs in one second sort by hash, so pick by what is new
    newest = max((d for d in cmp.run_dirs() if d != base_dir), key=lambda d: (d / "run.json").stat().st_mtime_ns)
    record = json.loads((newest / "run.json").read_text())
    assert record["tags"]["genai.baseline_intersect"] == "true" and record["baseline"]["cases_paired"] == 8
    assert joined.ret == 0, joined.stdout.str()


def test_malformed_gate_and_confidence_name_file_and_line(cmp: Project) -> None:
    result = candidate(cmp, {"f1": ">= baseline - -0.02"})
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*cand.yaml:*: gates.f1: '>= baseline - -0.02' is not a gate*write the margin's sign once*"])
    wrong_side = candidate(cmp, {"latency_p95_ms": ">= baseline - 100"})
    wrong_side.stderr.fnmatch_lines(["*gates.latency_p95_ms: latency_p95_ms is lower-is-better*'<= baseline + 100'*"])
    conf = candidate(cmp, {}, compare={"confidence": 1.5, "bootstrap": 10})
    conf.stderr.fnmatch_lines(["*cand.yaml:*: compare.confidence: must be strictly between 0 and 1*",
                               "*cand.yaml:*: compare.bootstrap: 10 is less than the minimum of 100*"])


def test_previous_compares_with_the_newest_complete_run_of_the_same_eval_set(cmp: Project) -> None:
    """`--genai-baseline previous` (or compare.baseline: previous): the first run has none (gates skipped, said so);
    a later one pairs with the newest complete run of this eval set, not with a -k subset or another eval set."""
    gates = {"f1": ">= 0.5", "pref_win_rate": ">= 0.6"}
    cmp.write_config("base.yaml", gates=gates, tracking__enabled=False)
    first = cmp.run("--genai-config", "base.yaml", "--genai-baseline", "previous")
    out = first.stdout.str()
    assert first.ret == 0, out
    assert "baseline: none (no earlier complete run of this eval set in" in out and "baseline gates skipped" in out
    first_dir = cmp.run_dirs()[-1]
    assert cmp.run("--genai-config", "base.yaml", "-k", "q001").ret == 0  # partial: never a baseline
    # the candidate: better on FIXED, worse on PLANTED -> pref_win_rate = an independent count, gate checked
    result = candidate(cmp, gates, "--genai-baseline", "previous")
    out = result.stdout.str()
    assert f"baseline: previous (run folder {first_dir.name})" in out, out
    cand, base = results_of(cmp.run_dirs()[-1]), results_of(first_dir)
    wins = sum(1.0 if cand[i]["f1"] > base[i]["f1"] else 0.5 if cand[i]["f1"] == base[i]["f1"] else 0.0 for i in cand)
    record = json.loads((cmp.run_dirs()[-1] / "run.json").read_text())
    assert record["metrics"]["pref_win_rate"] == pytest.approx(wins / len(cand))
    assert record["baseline"]["ref"] == "previous" and result.ret == 1  # 0.458 < 0.6: the pref gate fails
    (pref,) = [g for g in record["gates"] if g["metric"] == "pref_win_rate"]
    assert not pref["passed"] and not pref["skipped"]
