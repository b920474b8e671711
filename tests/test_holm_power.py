"""Comparisons that say what they can see: the bootstrap p of each paired delta, Holm-Bonferroni over the metrics
of one comparison (checked by hand and against statsmodels' multipletests on 1,000 random families), the minimum
detectable effect of a paired mean, and the power check of non-inferiority gates (a warning, or a failure with
compare.require_power), down to the terminal, run.json, comparison.json, MLflow, markdown and HTML."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest

from pytest_genai.compare.comparison import compare_runs, comparison_metrics
from pytest_genai.gates import evaluate_gates
from pytest_genai.stats.bootstrap import paired_bootstrap_tests
from pytest_genai.stats.multiple import holm
from pytest_genai.stats.power import mde_paired_mean, negligible, z_sum
from pytest_genai.types import CaseResult
from tests.conftest import Project


def case(i: int, f1: float) -> CaseResult:
    return CaseResult(id=str(i), question=f"q{i}", answer="a", answers=("gold",), em=float(f1 == 1.0), f1=f1,
                      latency_ms=100.0, input_tokens=10, output_tokens=5, cost_usd=0.001, seed=0)


# --- Holm ------------------------------------------------------------------------------------------------------

def test_holm_on_a_hand_computed_family() -> None:
    # sorted: d .005 x4 = .02; a .01 x3 = .03; c .03 x2 = .06; b .04 x1 = .04 -> kept monotone at .06
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}) == pytest.approx(
        {"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    assert holm({"x": 0.3, "y": 0.6}) == {"x": 0.6, "y": 0.6}  # capped at 1 only when over: 2 x .3, then max(.6, .6)
    assert holm({"x": 0.9, "y": 0.8}) == {"x": 1.0, "y": 1.0}
    out = holm({"x": 0.01, "none": math.nan})  # NaN is not in the family
    assert out["x"] == 0.01 and math.isnan(out["none"])
    assert holm({}) == {}
    with pytest.raises(ValueError, match="p-value of x must be in"):
        holm({"x": 1.5})


def test_holm_equals_statsmodels_multipletests_on_1000_random_families(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from statsmodels.stats.multitest import multipletests

    monkeypatch.setattr(gc, "collect", lambda *a: 0)  # multipletests runs a full gc.collect() per call: 60 ms here

    rng = random.Random(20261207)
    for trial in range(1000):
        m = rng.randint(1, 30)
        kind = trial % 3
        if kind == 0:
            ps = [rng.random() for _ in range(m)]
        elif kind == 1:  # many small ones, as in a comparison with a real change
            ps = [rng.random() ** 4 for _ in range(m)]
        else:  # ties and exact 0 / 1
            ps = [rng.choice((0.0, 0.01, 0.01, 0.05, 0.5, 1.0)) for _ in range(m)]
        names = [f"m{i}" for i in range(m)]
        ours = holm(dict(zip(names, ps)))
        reject, theirs, _, _ = multipletests(ps, alpha=0.05, method="holm")
        assert [ours[n] for n in names] == pytest.approx(list(theirs), abs=1e-12), (trial, ps)
        assert [ours[n] <= 0.05 for n in names] == list(reject)


# --- the bootstrap p and the MDE -------------------------------------------------------------------------------

def test_the_bootstrap_p_agrees_with_the_ci_and_is_one_for_identical_runs() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(0.5, 0.2, 200)
    for shift in (0.0, 0.01, 0.03, 0.05, 0.2):
        cand = base + shift + rng.normal(0, 0.2, 200)
        t = paired_bootstrap_tests({"x": cand}, {"x": base}, resamples=2000, seed=1)["x"]
        excludes = t.ci.low > 0 or t.ci.high < 0
        if abs(t.p - 0.05) > 0.01:  # away from the border, the p and the 95% CI say the same
            assert (t.p < 0.05) == excludes, (shift, t)
        assert t.sd == pytest.approx(float(np.std(cand - base, ddof=1)))
        assert t.se == pytest.approx(t.sd / math.sqrt(200), rel=0.15)
    same = paired_bootstrap_tests({"x": base}, {"x": base}, resamples=500, seed=1)["x"]
    assert same.p == 1.0 and same.sd == 0.0
    clear = paired_bootstrap_tests({"x": base + 1.0}, {"x": base}, resamples=999, seed=1)["x"]
    assert clear.p == pytest.approx(2 / 1000)  # no resample at or below 0: the +1-corrected floor
    three = paired_bootstrap_tests({"x": [1.0, 1.0, 1.0]}, {"x": [0.0, 0.0, 0.0]}, resamples=999, seed=1)["x"]
    assert three.p == 0.25  # 3 pairs: an exact sign-flip test cannot go below 2^(1-3), nor does the bootstrap p


def test_the_minimum_detectable_effect_of_a_paired_mean() -> None:
    assert z_sum(0.95, 0.8) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert mde_paired_mean(0.3, 20) == pytest.approx(2.801585 * 0.3 / math.sqrt(20), rel=1e-5)
    assert mde_paired_mean(0.3, 9) == math.inf and mde_paired_mean(0.0, 50) == 0.0  # under 10 pairs: no estimate
    assert negligible(3.7e-22, 1e-5, 1.06e-5) == 0.0 and negligible(0.01, 0.5) == 0.01  # float noise is no spread
    assert mde_paired_mean(0.3, 80) == pytest.approx(mde_paired_mean(0.3, 20) / 2)  # 4x the cases, half the MDE


def _pair(n: int) -> tuple[list[CaseResult], list[CaseResult]]:
    """Baseline F1 0.5 everywhere; the candidate 0.25 or 0.75 in turn: paired differences of sd ~0.25, mean 0."""
    base = [case(i, 0.5) for i in range(n)]
    cand = [case(i, 0.25 if i % 2 else 0.75) for i in range(n)]
    return cand, base


@pytest.mark.parametrize("n, underpowered", [(20, True), (2000, False)])
def test_a_two_point_margin_is_underpowered_on_20_cases_and_not_on_2000(n: int, underpowered: bool) -> None:
    cand, base = _pair(n)
    comp = compare_runs(cand, base, seed=5, resamples=500)
    f1 = comp.metrics["f1"]
    assert f1.sd == pytest.approx(float(np.std([c.f1 - b.f1 for c, b in zip(cand, base)], ddof=1)))
    assert f1.mde == pytest.approx(mde_paired_mean(f1.sd, n))
    gates = {"f1": ">= baseline - 0.02", "latency_p50_ms": "<= baseline + 1000", "em": "> baseline + 0.01"}
    metrics = {"f1": 0.5, "latency_p50_ms": 100.0, "em": 0.0}
    args = dict(cis={}, deltas=comp.delta_cis, mde=comp.mdes, pairs=n)
    verdicts = {g.metric: g for g in evaluate_gates(gates, metrics, **args)}
    g = verdicts["f1"]
    assert g.underpowered is underpowered and g.mde == pytest.approx(f1.mde)
    assert ("underpowered: margin 0.02 < minimum detectable effect" in g.reason) is underpowered
    assert not verdicts["latency_p50_ms"].underpowered  # a margin far above what 20 cases can see
    assert not verdicts["em"].underpowered  # a superiority gate: no power check (its MDE is recorded)
    strict = {g.metric: g for g in evaluate_gates(gates, metrics, require_power=True, **args)}
    assert strict["f1"].passed is (g.passed and not underpowered)
    if underpowered:
        assert strict["f1"].reason.startswith("underpowered: margin 0.02") and "compare.require_power" in strict["f1"].reason


def test_holm_is_over_every_metric_of_the_comparison_and_logged_as_metrics() -> None:
    cand, base = _pair(40)
    cand = [c if i % 5 else CaseResult(**{**c.__dict__, "latency_ms": 300.0}) for i, c in enumerate(cand)]
    comp = compare_runs(cand, base, seed=5, resamples=500)
    raw = {m: mc.p for m, mc in comp.metrics.items() if math.isfinite(mc.p)}
    assert comp.family_size == len(raw) >= 5 and comp.p_holm == pytest.approx(holm(raw))
    flat = comparison_metrics(comp, {})
    assert flat["f1_delta_p"] == pytest.approx(comp.metrics["f1"].p)
    assert flat["f1_delta_p_holm"] == pytest.approx(comp.metrics["f1"].p_holm)
    assert flat["f1_delta_mde"] == pytest.approx(comp.metrics["f1"].mde)
    assert all(flat[f"{m}_delta_p_holm"] >= flat[f"{m}_delta_p"] for m in raw)
    stats = comp.to_dict()["statistics"]
    assert f"over the {len(raw)} metrics compared" in stats["multiplicity"] and stats["power"]["power"] == 0.8


# --- end to end ------------------------------------------------------------------------------------------------

PIPELINE = '''
from pytest_genai import Answer

def factory(config):
    worse = config.get("llm.model_id") == "worse"
    def pipeline(case):
        n = int(case.id[1:])
        text = "no idea" if worse and n % 7 == 3 else case.context.split()[0]
        return Answer(text=text, contexts=(case.context,))
    return pipeline
'''


def _cases(n: int) -> list[dict[str, Any]]:
    return [{"id": f"q{i:03d}", "question": f"Which word names item {i}?", "answers": [f"w{i}"],
             "context": f"w{i} names item {i}."} for i in range(n)]


@pytest.fixture
def small(project: Project) -> Project:
    project.pytester.makepyfile(genai_power_pipeline=PIPELINE)
    project.config.update({"pipeline": "genai_power_pipeline:factory", "llm": {"model_id": "good"}, "gates": {}})
    project.write_cases(_cases(20))
    return project


def test_p_values_side_by_side_and_the_power_warning_in_every_report(small: Project) -> None:
    small.write_config("base.yaml", tracking__enabled=False)
    assert small.run("--genai-config", "base.yaml").ret == 0
    base_dir = small.run_dirs()[-1]
    gates = {"f1": ">= baseline - 0.02", "em": ">= baseline - 0.5"}
    small.write_config("cand.yaml", llm__model_id="worse", gates=gates)
    result = small.run("--genai-config", "cand.yaml", "--genai-baseline", str(base_dir), "--genai-markdown", "summary.md")
    out = result.stdout.str()
    run_dir = small.run_dirs()[-1]
    record = json.loads((run_dir / "run.json").read_text())
    b = record["baseline"]
    assert set(b["p_values"]) == set(b["p_holm"]) >= {"f1", "em"}
    assert all(b["p_holm"][m] >= b["p_values"][m] for m in b["p_values"])
    header = next(ln for ln in out.splitlines() if ln.startswith("metric "))
    assert "p (Holm)" in header
    f1_line = next(ln for ln in out.splitlines() if ln.startswith("f1 "))
    raw, adj = b["p_values"]["f1"], b["p_holm"]["f1"]
    assert f"{raw:.3f} ({adj:.3f})" in f1_line
    gate = next(g for g in record["gates"] if g["metric"] == "f1")
    assert gate["underpowered"] and gate["mde"] == pytest.approx(0.2295, abs=1e-4)  # 20 cases cannot see 2 points (docs)
    assert not next(g for g in record["gates"] if g["metric"] == "em")["underpowered"]  # 0.5 they can
    assert "power: gate f1 >= baseline - 0.02 asks about a smaller change than this eval set can detect" in out
    comparison = json.loads((run_dir / "comparison.json").read_text())
    assert comparison["metrics"]["f1"]["p_holm"] == pytest.approx(adj) and comparison["metrics"]["f1"]["mde"] > 0.02
    md = (small.path / "summary.md").read_text()
    assert "p (Holm)" in md and f"{raw:.3f} ({adj:.3f})" in md and "asks about a smaller change" in md
    html = (run_dir / "report.html").read_text()
    assert "p (Holm)" in html and f"{raw:.3f} ({adj:.3f})" in html and "asks about a smaller change" in html
    from mlflow.tracking import MlflowClient

    m = MlflowClient(tracking_uri=small.mlflow_uri).get_run(record["tracking"]["run_id"]).data.metrics
    assert m["f1_delta_p"] == pytest.approx(raw) and m["f1_delta_p_holm"] == pytest.approx(adj) and "f1_delta_mde" in m

    small.write_config("strict.yaml", llm__model_id="worse", gates=gates, compare={"require_power": True},
                       tracking__enabled=False)
    strict = small.run("--genai-config", "strict.yaml", "--genai-baseline", str(base_dir))
    assert strict.ret == 1, strict.stdout.str()
    gate = next(g for g in json.loads((small.run_dirs()[-1] / "run.json").read_text())["gates"] if g["metric"] == "f1")
    assert not gate["passed"] and "compare.require_power" in gate["reason"]


def test_too_few_pairs_are_underpowered_and_a_constant_shift_is_not() -> None:
    cand, base = _pair(6)
    comp = compare_runs(cand, base, seed=5, resamples=300)
    assert comp.metrics["f1"].mde == math.inf and comp.to_dict()["metrics"]["f1"]["mde"] is None
    g, = evaluate_gates({"f1": ">= baseline - 0.5"}, {"f1": 0.5}, deltas=comp.delta_cis, mde=comp.mdes, pairs=6)
    assert g.underpowered and g.mde is None and "6 paired case(s) are too few" in g.reason
    # every case's cost drops by exactly the same amount: the spread is float noise, not a reason to fail
    base = [CaseResult(**{**case(i, 1.0).__dict__, "cost_usd": 1.3e-5 + i * 1e-7}) for i in range(30)]
    cand = [CaseResult(**{**b.__dict__, "cost_usd": b.cost_usd - 6e-7}) for b in base]
    comp = compare_runs(cand, base, seed=5, resamples=300)
    g, = evaluate_gates({"cost_per_question_usd": "<= baseline"}, {"cost_per_question_usd": 1e-5},
                        deltas=comp.delta_cis, mde=comp.mdes, pairs=30, require_power=True)
    assert comp.metrics["cost_per_question_usd"].mde == 0.0 and g.passed and not g.underpowered
