"""Pairing, per-case deltas, regressions, the F1 preference judge, compare_runs / run_cis, metric names, and the
confidence- and baseline-aware gate grammar, on hand-made CaseResults with known answers."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest

from pytest_genai.compare.comparison import BUILTIN_PER_CASE, bootstrappable, compare_runs, comparison_metrics, run_cis
from pytest_genai.compare.names import stat_name
from pytest_genai.compare.pairing import ComparisonError, case_deltas, pair_cases, pref_win_rate_f1, regressions
from pytest_genai.gates import evaluate_gates, gate_problem, needs_baseline, parse_gate, parse_gate_spec
from pytest_genai.metrics.registry import METRICS, aggregate
from pytest_genai.runlog import failing, gates_verdict, is_skipped
from pytest_genai.stats import CI, mcnemar_exact
from pytest_genai.stats.bootstrap import bootstrap_ci
from pytest_genai.types import CaseResult


def case(i: int | str, f1: float = 1.0, em: float | None = None, **kw) -> CaseResult:
    em = (1.0 if f1 == 1.0 else 0.0) if em is None else em
    fields = dict(id=str(i), question=f"question {i}", answer=f"answer {i}", answers=("gold",), em=em, f1=f1,
                  latency_ms=100.0, input_tokens=10, output_tokens=5, cost_usd=0.001, seed=0)
    fields.update(kw)
    return CaseResult(**fields)


# --- pairing ---------------------------------------------------------------------------------------------------

def test_pair_cases_by_id_in_candidate_order() -> None:
    base = [case("a"), case("b"), case("c")]
    cand = [case("c"), case("a"), case("b")]
    p = pair_cases(cand, base, intersect=False)
    assert p.ids == ("c", "a", "b") and [b.id for b in p.baseline] == ["c", "a", "b"]
    assert p.only_candidate == () and p.only_baseline == ()


def test_pair_cases_refuses_different_ids_unless_intersecting() -> None:
    base = [case(i) for i in range(10)]
    cand = [case(i) for i in range(3, 20)]
    with pytest.raises(ComparisonError) as err:
        pair_cases(cand, base, intersect=False)
    msg = str(err.value)
    assert "candidate (17 cases)" in msg and "baseline (10 cases)" in msg
    assert "10 only in the candidate (10, 11, 12, 13, 14, … (5 more))" in msg
    assert "3 only in the baseline (0, 1, 2)" in msg and "--genai-baseline-intersect" in msg
    p = pair_cases(cand, base, intersect=True)
    assert p.ids == tuple(str(i) for i in range(3, 10)) and p.intersect
    assert p.only_candidate == tuple(str(i) for i in range(10, 20)) and p.only_baseline == ("0", "1", "2")
    with pytest.raises(ComparisonError, match="share no case id"):
        pair_cases([case("x")], [case("y")], intersect=True)
    with pytest.raises(ComparisonError, match="the baseline has 1 duplicate case id"):
        pair_cases([case("x")], [case("x"), case("x")], intersect=True)


def test_case_deltas_cover_every_per_case_measurement() -> None:
    c = case("q", f1=0.5, latency_ms=250.0, hit_at_k=1.0, context_used=True, safety_flags=("EMAIL", "PHONE"),
             blocked=True, scores={"answer_words": 7.0, "f1": 0.1}, expect_failures=("too long",))
    b = case("q", f1=1.0, latency_ms=200.0, hit_at_k=0.0, context_used=False, safety_flags=(),
             scores={"answer_words": 4.0, "only_base": 1.0})
    d, = case_deltas(pair_cases([c], [b], intersect=False))
    m = d.metrics
    assert (m["passed"].candidate, m["passed"].baseline, m["passed"].delta) == (0.0, 1.0, -1.0)
    assert (m["em"].delta, m["f1"].delta) == (-1.0, -0.5)
    assert m["latency_ms"].delta == 50.0 and m["hit_at_k"].delta == 1.0 and m["context_used"].delta == 1.0
    assert (m["safety_flags"].candidate, m["safety_flags"].baseline) == (2.0, 0.0) and m["blocked"].delta == 1.0
    assert m["recall_at_k"].candidate is None and m["recall_at_k"].delta is None  # not a RAG case: no value
    assert m["answer_words"].delta == 3.0 and m["scores.f1"].candidate == 0.1  # a score named like a measurement
    assert m["only_base"].candidate is None and m["only_base"].baseline == 1.0 and m["only_base"].delta is None
    assert {"input_tokens", "output_tokens", "cost_usd", "reciprocal_rank"} <= set(m)
    assert (d.candidate_answer, d.baseline_answer) == ("answer q", "answer q")
    json.dumps(d.to_dict(), allow_nan=False)


def test_regressions_and_improvements_sorted_by_severity() -> None:
    base = [case("f1-small", 0.9, 0.0), case("pass-fail", 1.0), case("em", 1.0), case("f1-big", 0.9, 0.0),
            case("f1-mid", 0.8, 0.0), case("edge", 0.8, 0.0), case("same", 0.5),
            case("up-em", 0.0), case("up-pass", 1.0, error="boom"), case("up-f1", 0.1, 0.0)]
    cand = [case("f1-small", 0.85, 0.0), case("pass-fail", 1.0, expect_failures=("must cite",)),
            case("em", 0.9, 0.0), case("f1-big", 0.1, 0.0), case("f1-mid", 0.5, 0.0), case("edge", 0.6, 0.0),
            case("same", 0.5), case("up-em", 1.0), case("up-pass", 1.0), case("up-f1", 0.6, 0.0)]
    regressed, improved = regressions(case_deltas(pair_cases(cand, base, intersect=False)), f1_drop=0.2)
    assert [c.id for c in regressed] == ["pass-fail", "em", "f1-big", "f1-mid"]  # "edge" drops exactly 0.2: kept
    assert regressed[0].reasons == ("pass → fail",)
    assert regressed[1].reasons == ("EM 1 → 0",)
    assert regressed[2].reasons == ("F1 0.90 → 0.10 (-0.80)",)
    assert [c.id for c in improved] == ["up-pass", "up-em", "up-f1"]
    assert improved[1].reasons == ("EM 0 → 1", "F1 0.00 → 1.00 (+1.00)")
    assert regressions(case_deltas(pair_cases(cand, base, intersect=False)), f1_drop=0.0)[0][-1].id == "f1-small"
    with pytest.raises(ValueError, match="f1_drop"):
        regressions([], f1_drop=2)
    json.dumps([c.to_dict() for c in regressed], allow_nan=False)


def test_pref_win_rate_f1_counts_wins_and_half_ties() -> None:
    base = [case(i, f) for i, f in enumerate([0.5, 0.5, 0.5, 1.0, 0.0])]
    cand = [case(i, f) for i, f in enumerate([0.6, 0.5, 0.4, 1.0, 0.2])]
    rate, wins = pref_win_rate_f1(pair_cases(cand, base, intersect=False))
    assert wins == (1.0, 0.5, 0.0, 0.5, 1.0) and rate == pytest.approx(3 / 5)


# --- compare_runs: a candidate that is worse on a planted subset ---------------------------------------------

PLANTED = {f"q{i:03d}" for i in range(0, 200, 8)}  # 25 of 200 cases


def planted_runs() -> tuple[list[CaseResult], list[CaseResult]]:
    rnd = random.Random(42)
    base = []
    for i in range(200):
        f1 = 1.0 if rnd.random() < 0.5 else round(rnd.uniform(0.3, 0.9), 3)
        base.append(case(f"q{i:03d}", f1, latency_ms=rnd.lognormvariate(5.5, 0.3), hit_at_k=float(rnd.random() < 0.8)))
    cand = [replace(b, f1=0.0, em=0.0, answer="wrong") if b.id in PLANTED else b for b in base]
    return cand, base


def test_compare_runs_finds_the_planted_regression() -> None:
    cand, base = planted_runs()
    comp = compare_runs(cand, base, seed=3, baseline_id="run-1", baseline_source="models:/m@production",
                        candidate_eval_set_hash="abc", baseline_eval_set_hash="abc")
    f1 = comp.metrics["f1"]
    assert f1.delta_ci.high < 0 and f1.delta_ci.excludes(0.0)  # the paired CI excludes zero
    assert f1.delta == pytest.approx(np.mean([c.f1 - b.f1 for c, b in zip(cand, base)]))
    assert f1.candidate == pytest.approx(aggregate(cand, {})["f1"]) and f1.baseline == pytest.approx(aggregate(base, {})["f1"])
    assert {c.id for c in comp.regressed} == PLANTED and comp.improved == ()
    # pref_win_rate equals an independent count: the planted cases lose, the rest tie
    assert comp.pref_win_rate == pytest.approx((0 * len(PLANTED) + 0.5 * (200 - len(PLANTED))) / 200)
    assert comp.pref_win_rate_ci.high < 0.5
    alone = bootstrap_ci(comp.wins, seed=3)  # the win vector is resampled with the deltas' resamples
    assert (comp.pref_win_rate_ci.low, comp.pref_win_rate_ci.high) == pytest.approx((alone.low, alone.high), rel=1e-12)
    em_lost = sum(1 for b in base if b.id in PLANTED and b.em == 1.0)
    assert (comp.mcnemar["em"].b, comp.mcnemar["em"].c) == (0, em_lost)
    assert comp.mcnemar["em"].p == mcnemar_exact(0, em_lost) and comp.mcnemar["pass"].p == 1.0
    assert comp.metrics["latency_p95_ms"].delta == 0.0 and comp.metrics["latency_p95_ms"].delta_ci.half_width == 0.0

    gates = evaluate_gates({"f1": ">= baseline - 0.02"}, aggregate(cand, {}), deltas=comp.delta_cis)
    assert not gates[0].passed and not gates_verdict(gates)  # non-inferiority fails
    assert "delta CI [" in gates[0].reason
    wide = evaluate_gates({"f1": ">= baseline - 0.5"}, aggregate(cand, {}), deltas=comp.delta_cis)
    assert wide[0].passed and gates_verdict(wide)  # the same candidate passes with a wide margin

    doc = comp.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["baseline"] == {"id": "run-1", "source": "models:/m@production"} and doc["cases_paired"] == 200
    assert {r["id"] for r in doc["regressed"]} == PLANTED


def test_compare_runs_is_deterministic_and_checks_the_eval_set() -> None:
    cand, base = planted_runs()
    assert compare_runs(cand, base, seed=1).metrics == compare_runs(cand, base, seed=1).metrics
    assert compare_runs(cand, base, seed=1).metrics["f1"].delta_ci != compare_runs(cand, base, seed=2).metrics["f1"].delta_ci
    with pytest.raises(ComparisonError, match="eval_set.hash 111, this run 222"):
        compare_runs(cand, base, seed=0, candidate_eval_set_hash="222", baseline_eval_set_hash="111")
    comp = compare_runs(cand[:150], base, seed=0, intersect=True, candidate_eval_set_hash="222",
                        baseline_eval_set_hash="111")
    assert comp.intersect and comp.cases_paired == 150 and len(comp.only_baseline) == 50
    with pytest.raises(ValueError, match="unknown metric"):
        compare_runs(cand, base, seed=0, metrics=["f1", "nope"])
    only = compare_runs(cand, base, seed=0, metrics=["f1"])
    assert set(only.metrics) == {"f1"}


def mixed_run() -> list[CaseResult]:
    """Every kind of case the aggregates treat specially: errors, no gold docs, safety checked or not."""
    rnd = random.Random(7)
    out = []
    for i in range(60):
        kw: dict = dict(latency_ms=rnd.lognormvariate(5, 0.5), input_tokens=rnd.randint(5, 50),
                        output_tokens=rnd.randint(1, 20), cost_usd=rnd.random() / 100)
        if i % 3:
            kw.update(hit_at_k=float(rnd.random() < 0.7), recall_at_k=rnd.random(), reciprocal_rank=rnd.random(),
                      context_used=rnd.random() < 0.6)
        if i % 4 == 0:
            flags = tuple(f for f in ("EMAIL", "TOXICITY") if rnd.random() < 0.3)
            kw.update(safety_flags=flags, toxicity=rnd.random() if i % 8 == 0 else None, blocked=bool(flags),
                      critical="EMAIL" in flags)
        if i % 5 == 0:
            kw.update(outputs_agree=rnd.random() < 0.8)
        if i % 11 == 0:
            kw.update(error="boom")
        out.append(case(i, round(rnd.random(), 2), **kw))
    return out


def test_run_cis_are_centred_on_the_registry_aggregates() -> None:
    results = mixed_run()
    agg = aggregate(results, {})
    cis = run_cis(results, seed=5, resamples=500)
    stats = bootstrappable()
    assert set(cis) == {m for m in stats if m in agg}  # every bootstrappable aggregate this run computed gets a CI
    for name, ci in cis.items():
        assert ci.point == pytest.approx(agg[name], rel=1e-12, abs=1e-12), name
        assert ci.low <= ci.point <= ci.high, name
    assert {"cases_total", "cases_evaluated", "cases_with_gold_docs", "env_drift", "pref_win_rate"}.isdisjoint(stats)
    assert stats["latency_p95_ms"] == ("percentile", 95.0) and stats["cost_total_usd"] == "sum"
    assert stats["context_use_rate"] == "mean"
    assert run_cis(results, seed=5, resamples=500) == cis


def test_builtin_per_case_values_mirror_the_registry() -> None:
    """Per case, the table's value is the registry aggregate over that one case (None and NaN alike)."""
    for r in mixed_run():
        for name, get in BUILTIN_PER_CASE.items():
            expected = METRICS.get(name).aggregate([r], {})
            got = get(r)
            if name == "safety_critical_count" and r.safety_flags is None:
                assert got is None and expected is None
                continue
            assert (got is None or math.isnan(got)) == (expected is None or math.isnan(expected)), (name, r.id)
            if got is not None and not math.isnan(got):
                assert got == pytest.approx(expected), name


def test_comparison_metric_names() -> None:
    cand, base = planted_runs()
    comp = compare_runs(cand, base, seed=0, resamples=300)
    cis = run_cis(cand, seed=0, resamples=300)
    flat = comparison_metrics(comp, cis)
    for metric in ("f1", "em", "latency_p95_ms"):
        for kind in ("ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high"):
            assert stat_name(metric, kind) in flat
    assert flat["f1_ci_low"] == cis["f1"].low and flat["f1_delta_ci_high"] == comp.metrics["f1"].delta_ci.high
    assert {"em_mcnemar_p", "pass_mcnemar_p", "pref_win_rate", "pref_win_rate_ci_low", "pref_win_rate_ci_high"} <= set(flat)
    assert all(isinstance(v, float) and math.isfinite(v) for v in flat.values())
    assert "mrr_ci_low" not in flat  # not a RAG run
    assert comparison_metrics(None, cis) == {k: v for k, v in flat.items() if k.endswith(("_ci_low", "_ci_high"))
                                             and "delta" not in k and not k.startswith("pref_win_rate")}
    assert stat_name("pref_win_rate", "value") == "pref_win_rate"
    with pytest.raises(ValueError, match="unknown statistic kind"):
        stat_name("f1", "ci_mid")


# --- gates -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("expr,kind,op,threshold,margin,bound", [
    (">= 0.6", "point", ">=", 0.6, None, None),
    ("  == 0 ", "point", "==", 0.0, None, None),
    ("ci_low >= 0.6", "ci", ">=", 0.6, None, "low"),
    ("ci_high<=1200", "ci", "<=", 1200.0, None, "high"),
    (">= baseline - 0.02", "baseline", ">=", None, -0.02, "low"),
    ("<= baseline + 100", "baseline", "<=", None, 100.0, "high"),
    (">= baseline", "baseline", ">=", None, 0.0, "low"),
    ("> baseline+1e-2", "baseline", ">", None, 0.01, "low"),
    ("< baseline - 5", "baseline", "<", None, -5.0, "high"),
])
def test_parse_gate_spec(expr: str, kind: str, op: str, threshold, margin, bound) -> None:
    spec = parse_gate_spec(expr)
    assert (spec.kind, spec.op, spec.threshold, spec.margin, spec.bound) == (kind, op, threshold, margin, bound)
    assert parse_gate_spec(str(spec)) == parse_gate_spec(str(spec))  # str() is a valid gate again


@pytest.mark.parametrize("expr,why", [
    ("== baseline", "a baseline gate takes >=, >, <= or <"),
    (">= baseline --0.02", "write the margin's sign once"),
    (">= baseline - x", "'x' is not a number"),
    ("ci_mid >= 0.6", "a CI gate is 'ci_low' or 'ci_high'"),
    ("ci_low == 0.6", "a CI gate is 'ci_low' or 'ci_high'"),
    (">= abc", "'abc' is not a number"),
    (">= nan", "not a finite number"),
    ("f1 >= 0.6", ""),
    ("0.6", ""),
    (">= basline - 0.02", ""),
])
def test_parse_gate_spec_errors_name_the_accepted_forms(expr: str, why: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_gate_spec(expr)
    msg = str(err.value)
    assert msg.startswith(f"{expr!r} is not a gate") and why in msg
    for example in ("'>= 0.6'", "'ci_low >= 0.6'", "'ci_high <= 1200'", "'>= baseline - 0.02'", "'<= baseline + 100'"):
        assert example in msg


def test_point_gates_unchanged() -> None:
    assert parse_gate(" >= 0.6 ") == (">=", 0.6)
    res = evaluate_gates({"f1": ">= 0.6", "error_rate": "== 0", "mrr": "> 0.1"}, {"f1": 0.7, "error_rate": 0.1})
    by = {g.metric: g for g in res}
    assert by["f1"].passed and by["f1"].reason == "" and not by["error_rate"].passed
    assert by["mrr"].reason == "not computed by this run"
    with pytest.raises(ValueError, match="gates.f1: 'about 0.6' is not a gate"):
        evaluate_gates({"f1": "about 0.6"}, {"f1": 0.7})


def test_ci_gates_read_the_bound() -> None:
    metrics = {"f1": 0.64, "latency_p95_ms": 1100.0}
    cis = {"f1": CI(0.61, 0.67, 0.64, 0.03, 64), "latency_p95_ms": CI(950.0, 1250.0, 1100.0, 150.0, 64)}
    res = evaluate_gates({"f1": ["ci_low >= 0.6", "ci_low >= 0.62"], "latency_p95_ms": "ci_high <= 1200"},
                         metrics, cis=cis)
    assert [g.passed for g in res] == [True, False, False]
    assert res[0].value == 0.64 and res[1].reason == "ci_low 0.61, CI [0.61, 0.67]"
    assert evaluate_gates({"f1": "ci_low >= 0.6"}, metrics)[0].reason == "no confidence interval for this metric"
    nan_ci = CI(math.nan, math.nan, 0.64, math.nan, 0)
    assert not evaluate_gates({"f1": "ci_low >= 0"}, metrics, cis={"f1": nan_ci})[0].passed


def test_baseline_gates_non_inferiority() -> None:
    metrics = {"f1": 0.60, "latency_p95_ms": 1300.0}
    deltas = {"f1": CI(-0.031, 0.007, -0.012, 0.019, 64), "latency_p95_ms": CI(20.0, 90.0, 55.0, 35.0, 64)}
    gates = {"f1": [">= baseline - 0.02", ">= baseline - 0.05", ">= baseline"],
             "latency_p95_ms": ["<= baseline + 100", "<= baseline + 50"]}
    res = evaluate_gates(gates, metrics, deltas=deltas)
    assert [g.passed for g in res] == [False, True, False, True, False]
    assert res[0].reason == "delta -0.012, delta CI [-0.031, 0.007], low bound >= -0.02 needed"
    assert res[3].reason.endswith("high bound <= +100 needed")
    assert not gates_verdict(res) and [g.expression for g in failing(res)] == [
        ">= baseline - 0.02", ">= baseline", "<= baseline + 50"]
    missing = evaluate_gates({"mrr": ">= baseline"}, {"mrr": 0.5}, deltas=deltas)[0]
    assert not missing.passed and "no paired comparison" in missing.reason


def test_baseline_gates_without_a_baseline_are_skipped() -> None:
    gates = {"f1": ">= baseline - 0.02", "em": ">= 0.5"}
    res = evaluate_gates(gates, {"f1": 0.6, "em": 0.55}, baseline_available=False,
                         baseline_note="first run: models:/m@production does not exist yet")
    f1, em = res
    assert is_skipped(f1) and not f1.passed and not is_skipped(em) and em.passed
    assert f1.reason == "skipped: no baseline (first run: models:/m@production does not exist yet)"
    assert gates_verdict(res) and failing(res) == []  # skipped is not failed
    required = evaluate_gates(gates, {"f1": 0.6, "em": 0.55}, baseline_available=False, require_baseline=True)
    assert not required[0].passed and not is_skipped(required[0]) and not gates_verdict(required)
    assert "a baseline is required" in required[0].reason
    assert needs_baseline(gates) and not needs_baseline({"em": ">= 0.5", "f1": "ci_low >= 0.5"})


def test_gate_problem_catches_the_wrong_direction() -> None:
    assert gate_problem("f1", ">= baseline - 0.02", True) is None
    assert gate_problem("latency_p95_ms", "<= baseline + 100", False) is None
    msg = gate_problem("latency_p95_ms", ">= baseline - 100", False)
    assert msg is not None and "lower-is-better" in msg and "'<= baseline + 100'" in msg
    assert "'>= baseline - 0.02'" in (gate_problem("f1", "<= baseline + 0.02", True) or "")
    assert "is not a gate" in (gate_problem("f1", "ci_low => 0.6", True) or "")
