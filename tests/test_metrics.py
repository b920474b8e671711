"""EM/F1 follow the official SQuAD v2.0 script; aggregates and gates are pure functions."""

from __future__ import annotations

import math

import pytest

from pytest_genai.gates import evaluate_gates, parse_gate
from pytest_genai.metrics import aggregate, em_score, f1_score, normalize_answer, percentile
from pytest_genai.types import CaseResult


@pytest.mark.parametrize(("raw", "norm"), [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  a  Cat, an apple ", "cat apple"),
    ("Theatre", "theatre"),  # 'the' only as a word
    ("", ""),
])
def test_normalize(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


def test_em_is_max_over_golds() -> None:
    assert em_score(["Nile", "The Nile"], "the nile.") == 1.0
    assert em_score(["Nile"], "Nile river") == 0.0


def test_f1_hand_checked() -> None:
    # pred tokens: paris is capital (3); gold: paris (1); overlap 1 -> P=1/3, R=1 -> F1=0.5
    assert f1_score(["Paris"], "Paris is the capital") == pytest.approx(0.5)
    # bag of tokens, counts matter: gold 'new york new' vs pred 'new'
    assert f1_score(["new york new"], "new") == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))
    assert f1_score(["Neil Armstrong", "Armstrong"], "Armstrong") == 1.0


def test_f1_empty_rules() -> None:
    assert f1_score([], "") == 1.0  # no gold answer and an empty prediction: both empty
    assert f1_score([], "something") == 0.0
    assert f1_score(["Paris"], "") == 0.0
    assert f1_score(["the"], "a") == 1.0  # gold normalises to nothing -> treated as unanswerable


def test_percentile_matches_linear_interpolation() -> None:
    xs = [10.0, 20.0, 30.0, 40.0]
    assert percentile(xs, 50) == 25.0
    assert percentile(xs, 95) == pytest.approx(38.5)
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def _result(cid: str, f1: float, error: str | None = None, latency: float = 10.0) -> CaseResult:
    return CaseResult(cid, "q", None if error else "a", ("a",), float(f1 == 1.0), f1, latency, 10, 2, 0.5, 1, error)


def test_aggregate_counts_errors_as_wrong() -> None:
    results = [_result("a", 1.0), _result("b", 0.5), _result("c", 0.0, error="boom")]
    m = aggregate(results, cases_total=4)
    assert m["cases_total"] == 4 and m["cases_evaluated"] == 3
    assert m["f1"] == pytest.approx(0.5)
    assert m["error_rate"] == pytest.approx(1 / 3)
    assert m["cost_total_usd"] == pytest.approx(1.5)
    assert m["cost_per_question_usd"] == pytest.approx(0.5)
    assert m["tokens_input_total"] == 30


def test_gates() -> None:
    assert parse_gate(" >= 0.6 ") == (">=", 0.6)
    res = evaluate_gates({"f1": ">= 0.6", "error_rate": "== 0", "mrr": "> 0.1"}, {"f1": 0.7, "error_rate": 0.1})
    by = {g.metric: g for g in res}
    assert by["f1"].passed and not by["error_rate"].passed
    assert not by["mrr"].passed and by["mrr"].reason == "not computed by this run"
    assert not evaluate_gates({"f1": ">= 0"}, {"f1": float("nan")})[0].passed
