"""The bootstrap against scipy.stats.bootstrap and explicit resamples; McNemar against scipy.stats.binomtest."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from pytest_genai.stats import CI, mcnemar_exact, mcnemar_from_pairs
from pytest_genai.stats.bootstrap import (bootstrap_ci, bootstrap_many, paired_bootstrap_delta, paired_bootstrap_many,
                                         resample_indices, statistic_for)

B = 2000
SCIPY_RUNS = 10


def scipy_reference(data: tuple, statistic, *, paired: bool = False) -> tuple[float, float, float, float]:
    """Mean and Monte Carlo tolerance of scipy's percentile-bootstrap endpoints over SCIPY_RUNS seeded runs.

    A percentile-bootstrap endpoint from B resamples is a sample quantile of the bootstrap distribution, so it
    carries Monte Carlo error (for the mean roughly sqrt(a(1-a)/B) / f(q_a) ~ 0.06 bootstrap SEs at a = 0.025,
    B = 2000). Our CI and each scipy run are independent draws of that error: the difference between ours and the
    mean of K scipy runs has SD sd * sqrt(1 + 1/K), with sd the spread of the scipy runs. We allow 4 of those SDs
    (plus a 5% slack for estimating sd from K = 10 runs): a correct implementation fails with probability ~1e-4,
    and every seed is fixed, so the test is deterministic; a wrong statistic, a wrong alpha or unpaired resampling
    is off by one or more bootstrap SEs, i.e. > 15 of these SDs."""
    lows, highs = [], []
    for k in range(SCIPY_RUNS):
        res = sps.bootstrap(data, statistic, n_resamples=B, method="percentile", confidence_level=0.95,
                            paired=paired, vectorized=True, rng=np.random.default_rng(1000 + k))
        lows.append(res.confidence_interval.low)
        highs.append(res.confidence_interval.high)
    factor = 4.0 * 1.05 * math.sqrt(1 + 1 / SCIPY_RUNS)
    return (float(np.mean(lows)), factor * float(np.std(lows, ddof=1)),
            float(np.mean(highs)), factor * float(np.std(highs, ddof=1)))


def check_against_scipy(ci: CI, data: tuple, statistic, *, paired: bool = False) -> None:
    low, tol_low, high, tol_high = scipy_reference(data, statistic, paired=paired)
    assert tol_low > 0 and tol_high > 0
    assert abs(ci.low - low) <= tol_low, (ci, low, tol_low)
    assert abs(ci.high - high) <= tol_high, (ci, high, tol_high)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261201)


def test_mean_ci_matches_scipy(rng: np.random.Generator) -> None:
    f1 = np.clip(rng.beta(2, 1.5, size=120), 0, 1)
    ci = bootstrap_ci(f1, statistic="mean", resamples=B, seed=7)
    assert ci.point == pytest.approx(f1.mean(), abs=1e-12) and ci.n == 120
    assert ci.low < ci.point < ci.high and ci.half_width == pytest.approx((ci.high - ci.low) / 2)
    check_against_scipy(ci, (f1,), lambda x, axis: np.mean(x, axis=axis))
    em = (rng.random(64) < 0.6).astype(float)  # a 0/1 metric on a small eval set
    check_against_scipy(bootstrap_ci(em, resamples=B, seed=3), (em,), lambda x, axis: np.mean(x, axis=axis))


def test_percentile_ci_matches_scipy(rng: np.random.Generator) -> None:
    latency = rng.lognormal(mean=6.0, sigma=0.5, size=300)
    ci = bootstrap_ci(latency, statistic=("percentile", 95), resamples=B, seed=11)
    assert ci.point == pytest.approx(np.percentile(latency, 95), rel=1e-12)
    check_against_scipy(ci, (latency,), lambda x, axis: np.percentile(x, 95, axis=axis))
    ci50 = bootstrap_ci(latency, statistic="p50", resamples=B, seed=11)
    check_against_scipy(ci50, (latency,), lambda x, axis: np.percentile(x, 50, axis=axis))


def test_sum_ci_matches_scipy(rng: np.random.Generator) -> None:
    cost = rng.gamma(2.0, 0.001, size=150)
    ci = bootstrap_ci(cost, statistic="sum", resamples=B, seed=5)
    assert ci.point == pytest.approx(cost.sum(), rel=1e-12)
    check_against_scipy(ci, (cost,), lambda x, axis: np.sum(x, axis=axis))


def test_paired_delta_matches_scipy_paired(rng: np.random.Generator) -> None:
    base = np.clip(rng.beta(3, 2, size=200), 0, 1)
    cand = np.clip(base + rng.normal(-0.02, 0.05, size=200), 0, 1)  # strongly correlated with the baseline
    ci = paired_bootstrap_delta(cand, base, resamples=B, seed=9)
    assert ci.point == pytest.approx((cand - base).mean(), abs=1e-12)
    check_against_scipy(ci, (cand, base), lambda c, b, axis: np.mean(c - b, axis=axis), paired=True)
    # pairing matters: the unpaired interval is several times wider, so a correlated change is only seen paired
    unpaired = sps.bootstrap((cand, base), lambda c, b, axis: np.mean(c, axis=axis) - np.mean(b, axis=axis),
                             n_resamples=B, method="percentile", rng=np.random.default_rng(1))
    assert 3 * ci.half_width < (unpaired.confidence_interval.high - unpaired.confidence_interval.low) / 2
    assert ci.excludes(0.0)


def test_paired_percentile_difference_matches_scipy(rng: np.random.Generator) -> None:
    base = rng.lognormal(6.0, 0.4, size=250)
    cand = base * rng.lognormal(0.05, 0.1, size=250)
    ci = paired_bootstrap_delta(cand, base, statistic=("percentile", 95), resamples=B, seed=4)
    assert ci.point == pytest.approx(np.percentile(cand, 95) - np.percentile(base, 95), rel=1e-9)
    check_against_scipy(ci, (cand, base),
                        lambda c, b, axis: np.percentile(c, 95, axis=axis) - np.percentile(b, 95, axis=axis), paired=True)


def _explicit(values: np.ndarray, idx: np.ndarray, stat: str, q: float = 0.0) -> np.ndarray:
    """The statistic of each resample computed the slow, obvious way (values[idx], NaN dropped)."""
    x = values[idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample
        if stat == "mean":
            return np.nanmean(x, axis=1)
        if stat == "sum":
            return np.nansum(x, axis=1)
        return np.nanpercentile(x, q, axis=1)


@pytest.mark.parametrize("n", [1, 2, 7, 63, 64, 65, 500])
def test_shared_resamples_equal_explicit_resampling(n: int) -> None:
    """The count-matrix and order-statistic shortcuts give exactly what indexing the resamples would give,
    NaN cases included (dropped from each resample's statistic)."""
    rng = np.random.default_rng(n)
    a = rng.lognormal(size=n)
    b = rng.normal(size=n)
    b[rng.random(n) < 0.2] = np.nan
    idx = np.concatenate(list(resample_indices(n, 300, seed=21)))
    assert idx.shape == (300, n)
    cols = {"a_mean": a, "a_sum": a, "a_p95": a, "a_p0": a, "a_p100": a, "b_mean": b, "b_p50": b, "b_sum": b}
    statistics = {"a_mean": "mean", "a_sum": "sum", "a_p95": "p95", "a_p0": "p0", "a_p100": "p100",
                  "b_mean": "mean", "b_p50": "p50", "b_sum": "sum"}
    cis = bootstrap_many(cols, statistics=statistics, resamples=300, confidence=0.9, seed=21)
    for name, ci in cis.items():
        stat = statistics[name]
        if np.isnan(cols[name]).all():  # the metric applies to no case: no CI (not a total of 0)
            assert ci.n == 0 and math.isnan(ci.low)
            continue
        dist = _explicit(cols[name], idx, "percentile" if stat.startswith("p") else stat,
                         float(stat[1:]) if stat.startswith("p") else 0.0)
        dist = dist[np.isfinite(dist)]
        if dist.size == 0:
            assert math.isnan(ci.low)
            continue
        low, high = np.percentile(dist, [5, 95])
        assert ci.low == pytest.approx(low, rel=1e-9, abs=1e-12) and ci.high == pytest.approx(high, rel=1e-9, abs=1e-12), name


def test_deterministic_and_shared(rng: np.random.Generator) -> None:
    x = rng.normal(size=400)
    assert bootstrap_ci(x, seed=1) == bootstrap_ci(x, seed=1)
    assert bootstrap_ci(x, seed=1) != bootstrap_ci(x, seed=2)
    many = bootstrap_many({"x": x, "y": x * 2}, seed=1)
    alone = bootstrap_ci(x, seed=1)  # same (seed, n, resamples): the same resamples (BLAS rounding aside)
    assert (many["x"].low, many["x"].high) == pytest.approx((alone.low, alone.high), rel=1e-12)
    assert many["y"].low == pytest.approx(2 * many["x"].low) and many["y"].high == pytest.approx(2 * many["x"].high)
    one = paired_bootstrap_many({"x": x, "p": x}, {"x": x * 0, "p": x * 0}, statistics={"x": "mean", "p": "p95"}, seed=1)
    assert (one["x"].low, one["x"].high, one["x"].n) == pytest.approx((many["x"].low, many["x"].high, 400), rel=1e-12)


def test_nan_cases_dropped() -> None:
    with_nan = [0.2, float("nan"), 0.9, 0.4, float("nan"), 0.7]
    assert bootstrap_ci(with_nan, seed=3) == bootstrap_ci([0.2, 0.9, 0.4, 0.7], seed=3)
    assert bootstrap_ci(with_nan, seed=3).n == 4
    empty = bootstrap_ci([float("nan")], seed=0)
    assert math.isnan(empty.low) and empty.n == 0 and not empty.finite
    assert math.isnan(bootstrap_many({"x": [math.nan, math.nan]}, seed=0)["x"].point)
    assert bootstrap_many({"x": [math.nan, math.nan]}, statistics="sum", seed=0)["x"].n == 0  # not a total of 0
    single = bootstrap_ci([0.5], seed=0)
    assert (single.low, single.high, single.half_width) == (0.5, 0.5, 0.0)


def test_bad_arguments() -> None:
    for confidence in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
            bootstrap_ci([1.0, 2.0], confidence=confidence, seed=0)
    with pytest.raises(ValueError, match="resamples must be a positive integer"):
        bootstrap_ci([1.0, 2.0], resamples=0, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        bootstrap_ci([1.0, 2.0], seed=-1)
    with pytest.raises(ValueError, match="unknown statistic 'median'"):
        bootstrap_ci([1.0, 2.0], statistic="median", seed=0)
    with pytest.raises(ValueError, match="one value per case"):
        bootstrap_many({"a": [1.0, 2.0], "b": [1.0]}, seed=0)
    with pytest.raises(ValueError, match="same number of paired cases"):
        paired_bootstrap_delta([1.0, 2.0], [1.0], seed=0)


def test_registry_aggregations_map_to_statistics() -> None:
    assert statistic_for("mean") == "mean" and statistic_for("rate") == "mean" and statistic_for("sum") == "sum"
    assert statistic_for("p95") == ("percentile", 95.0) and statistic_for("p99") == ("percentile", 99.0)
    assert all(statistic_for(k) is None for k in ("count", "custom", "max", "min", "unheard-of"))


# --- McNemar -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("b,c", [(0, 1), (1, 0), (1, 1), (0, 6), (2, 9), (12, 3), (5, 5), (40, 60), (17, 30),
                                 (500, 560), (1200, 1350), (2000, 2150)])
def test_mcnemar_matches_binomtest(b: int, c: int) -> None:
    expected = sps.binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_mcnemar_exact_values() -> None:
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pair: no evidence of a difference
    assert mcnemar_exact(0, 6) == float(Fraction(2, 64))
    assert mcnemar_exact(3, 3) == 1.0
    assert 0 < mcnemar_exact(0, 1000) < 1e-300  # exact integers: a tiny p-value, not an overflow or a 0 from rounding
    with pytest.raises(ValueError, match="non-negative integers"):
        mcnemar_exact(-1, 2)
    cand = [True, True, False, False, True, False, True]
    base = [True, False, True, False, False, False, False]
    m = mcnemar_from_pairs(cand, base)
    assert (m.b, m.c) == (3, 1) and m.p == mcnemar_exact(3, 1) == pytest.approx(0.625)
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar_from_pairs([True], [True, False])
