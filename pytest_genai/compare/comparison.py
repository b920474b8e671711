"""A candidate run against its baseline: per-metric paired deltas with bootstrap CIs, McNemar for EM and pass
flips, regressed/improved cases, the preference win rate; and one run's own CIs. Imports numpy (via stats): only
imported when CIs or a comparison are computed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from pytest_genai.compare.judge import F1Judge, JudgeError
from pytest_genai.compare.names import stat_name
from pytest_genai.compare.pairing import CaseChange, ComparisonError, case_deltas, case_passed, pair_cases, regressions
from pytest_genai.metrics.builtin import PII_TYPES, error_share
from pytest_genai.metrics.registry import METRICS, Metric
from pytest_genai.stats.bootstrap import (
    Statistic,
    as_stat,
    bootstrap_many,
    paired_bootstrap_tests,
    point_estimates,
    statistic_for,
)
from pytest_genai.stats.ci import CI, NAN_CI
from pytest_genai.stats.mcnemar import McNemar, mcnemar_from_pairs
from pytest_genai.stats.multiple import holm
from pytest_genai.stats.power import MIN_PAIRS, POWER, mde_from_se, mde_paired_mean, negligible
from pytest_genai.types import CaseResult

PerCaseValue = Callable[[CaseResult], "float | None"]


def _pii(r: CaseResult) -> float | None:
    return None if r.safety_flags is None else float(any(f in PII_TYPES for f in r.safety_flags))


def _answered_latency(r: CaseResult) -> float | None:
    return r.latency_ms if r.error is None else None


def _cost(r: CaseResult) -> float:
    return r.cost_usd


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)


# Per-case values of the built-in metrics whose aggregate is a mean, rate, sum or percentile over cases: the
# aggregate of these values (None dropped) is the registry's value (tests check it metric by metric).
BUILTIN_PER_CASE: Mapping[str, PerCaseValue] = {
    "em": lambda r: r.em,
    "f1": lambda r: r.f1,
    "latency_p50_ms": _answered_latency,
    "latency_p95_ms": _answered_latency,
    "latency_p99_ms": _answered_latency,
    "tokens_input_total": lambda r: r.input_tokens,
    "tokens_output_total": lambda r: r.output_tokens,
    "cost_total_usd": _cost,  # one function: metrics with the same per-case value share one array
    "cost_per_question_usd": _cost,
    "error_rate": error_share,
    "hit_at_k": lambda r: r.hit_at_k,
    "recall_at_k": lambda r: r.recall_at_k,
    "mrr": lambda r: r.reciprocal_rank,
    "context_use_rate": lambda r: _opt(r.context_used),
    "pii_flag_rate": _pii,
    "toxicity_flag_rate": lambda r: (None if r.safety_flags is None or r.toxicity is None
                                     else float("TOXICITY" in r.safety_flags)),
    "block_rate": lambda r: None if r.safety_flags is None else float(r.blocked),
    "safety_critical_count": lambda r: None if r.safety_flags is None else float(r.critical),  # set only when checked
    "determinism_rate": lambda r: _opt(r.outputs_agree),
    "pass_rate": lambda r: r.pass_rate,
    "flip_rate": lambda r: _opt(r.flip),
    "pass_at_k": lambda r: None if r.pass_rate is None else float(r.pass_rate > 0),
    "pass_all_k": lambda r: None if r.pass_rate is None else float(r.pass_rate >= 1),
}


def bootstrap_statistic(metric: Metric) -> Statistic | None:
    """How a registry metric is bootstrapped, or None (no CI: counts, facts, custom run metrics, min/max)."""
    if metric.available is not None:
        return None
    return statistic_for(metric.aggregation)


def per_case_value(metric: Metric) -> PerCaseValue:
    """A metric's per-case value: the built-in table, a registered scorer's `scores` entry, or (a user run metric
    with a decomposable aggregation) its aggregate over that single case."""
    if metric.name in BUILTIN_PER_CASE:
        return BUILTIN_PER_CASE[metric.name]
    if metric.per_case is not None:
        return lambda r: r.scores.get(metric.name)
    return lambda r: metric.aggregate([r], {})


def bootstrappable(names: Iterable[str] | None = None) -> dict[str, Statistic]:
    """{metric: statistic} for the registry metrics that get a CI, in registry order (restricted to `names`)."""
    wanted = None if names is None else set(names)
    unknown = sorted(wanted - set(METRICS)) if wanted is not None else []
    if unknown:
        raise ValueError(f"unknown metric(s) to compare: {', '.join(unknown)}")
    out = {}
    for name in METRICS:
        stat = bootstrap_statistic(METRICS.get(name))
        if stat is not None and (wanted is None or name in wanted):
            out[name] = stat
    return out


def case_vectors(results: Sequence[CaseResult], names: Iterable[str]) -> dict[str, np.ndarray]:
    """One float array per metric, aligned with `results` (NaN where the metric does not apply). Metrics with the
    same per-case value (the latency percentiles) share one array, so their order statistics are found once."""
    by_fn: dict[Any, np.ndarray] = {}
    out = {}
    for name in names:
        fn = per_case_value(METRICS.get(name))
        if fn not in by_fn:
            by_fn[fn] = np.array([math.nan if (v := fn(r)) is None else float(v) for r in results], dtype=np.float64)
        out[name] = by_fn[fn]
    return out


def run_cis(results: Sequence[CaseResult], seed: int, resamples: int = 2000, confidence: float = 0.95, *,
            metrics: Iterable[str] | None = None) -> dict[str, CI]:
    """Percentile-bootstrap CI over cases of every aggregate of this run that has one (see `bootstrappable`),
    centred on the registry's value; a metric with no case where it applies (not computed) gets none."""
    stats = bootstrappable(metrics)
    if not stats or not results:
        return {}
    cis = bootstrap_many(case_vectors(results, stats), statistics=stats, resamples=resamples, confidence=confidence,
                         seed=seed)
    return {n: ci for n, ci in cis.items() if ci.n > 0}


@dataclass(frozen=True)
class MetricComparison:
    """One aggregate on the paired cases: each side's value and the paired CI of candidate - baseline."""

    metric: str
    candidate: float
    baseline: float
    delta: float
    delta_ci: CI
    statistic: str
    higher_is_better: bool | None
    p: float = math.nan  # two-sided bootstrap p of "no difference", from the CI's resamples
    p_holm: float = math.nan  # Holm-adjusted over every metric of this comparison (one family)
    mde: float = math.nan  # minimum detectable effect at this many pairs (alpha 1 - confidence, power 0.8)
    sd: float = math.nan  # sample sd of the per-case differences (a mean), else NaN
    se: float = math.nan  # bootstrap standard error of the delta

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": _plain(self.candidate), "baseline": _plain(self.baseline), "delta": _plain(self.delta),
                "delta_ci": self.delta_ci.to_dict(), "statistic": self.statistic,
                "higher_is_better": self.higher_is_better, "p": _plain(self.p), "p_holm": _plain(self.p_holm),
                "mde": _plain(self.mde), "sd_of_differences": _plain(self.sd), "se": _plain(self.se)}


def _plain(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class Comparison:
    """Everything comparison.json holds; `to_dict()` is that file's content."""

    baseline_id: str | None
    baseline_source: str | None
    candidate_eval_set_hash: str | None
    baseline_eval_set_hash: str | None
    intersect: bool
    cases_paired: int
    only_candidate: tuple[str, ...]
    only_baseline: tuple[str, ...]
    metrics: Mapping[str, MetricComparison]
    mcnemar: Mapping[str, McNemar]  # "em", "pass"
    regressed: tuple[CaseChange, ...]
    improved: tuple[CaseChange, ...]
    pref_win_rate: float
    pref_win_rate_ci: CI
    pref_judge: str = "f1"
    seed: int = 0
    resamples: int = 2000
    confidence: float = 0.95
    f1_drop: float = 0.2
    wins: tuple[float, ...] = field(default=(), repr=False)  # per paired case, for an independent check
    judge_details: Mapping[str, Any] = field(default_factory=dict, repr=False)  # the LLM judge's: prompt, verdicts
    judge_error: str | None = None  # the judge failed: no pref_win_rate (a run error)
    judge_tags: Mapping[str, str] = field(default_factory=dict)  # genai.pref_judge & co

    @property
    def family_size(self) -> int:
        """How many metrics the Holm adjustment was over (those with a finite p)."""
        return sum(math.isfinite(mc.p) for mc in self.metrics.values())

    @property
    def p_values(self) -> dict[str, float]:
        return {m: mc.p for m, mc in self.metrics.items() if math.isfinite(mc.p)}

    @property
    def p_holm(self) -> dict[str, float]:
        return {m: mc.p_holm for m, mc in self.metrics.items() if math.isfinite(mc.p_holm)}

    @property
    def mdes(self) -> dict[str, float]:
        """{metric: minimum detectable effect}, infinite with too few pairs: what the baseline gates' power check
        reads."""
        return {m: mc.mde for m, mc in self.metrics.items() if not math.isnan(mc.mde)}

    @property
    def delta_cis(self) -> dict[str, CI]:
        """{metric: paired CI of candidate - baseline}: what the baseline gates read."""
        return {m: mc.delta_ci for m, mc in self.metrics.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": {"id": self.baseline_id, "source": self.baseline_source},
            "eval_set_hash": {"candidate": self.candidate_eval_set_hash, "baseline": self.baseline_eval_set_hash},
            "intersect": self.intersect, "cases_paired": self.cases_paired,
            "only_candidate": list(self.only_candidate), "only_baseline": list(self.only_baseline),
            "statistics": {"method": "percentile bootstrap, paired over cases", "seed": self.seed,
                           "resamples": self.resamples, "confidence": self.confidence,
                           "p_values": "two-sided, read from the same resamples as the delta CIs",
                           "multiplicity": f"Holm-Bonferroni over the {self.family_size} metrics compared (p_holm)",
                           "power": {"alpha": round(1.0 - self.confidence, 10), "power": POWER,
                                     "mde": "(z(1-alpha/2) + z(power)) x standard error of the delta; a mean's: "
                                            "sd of the paired differences / sqrt(pairs)"}},
            "metrics": {m: mc.to_dict() for m, mc in self.metrics.items()},
            "mcnemar": {k: v.to_dict() for k, v in self.mcnemar.items()},
            "pref_win_rate": {"judge": self.pref_judge, "value": _plain(self.pref_win_rate),
                              "ci": self.pref_win_rate_ci.to_dict(), **dict(self.judge_details),
                              **({"error": self.judge_error} if self.judge_error else {})},
            "f1_drop": self.f1_drop,
            "regressed": [c.to_dict() for c in self.regressed],
            "improved": [c.to_dict() for c in self.improved],
        }


def compare_runs(candidate_results: Sequence[CaseResult], baseline_results: Sequence[CaseResult], *,
                 metrics: Iterable[str] | None = None, seed: int, resamples: int = 2000, confidence: float = 0.95,
                 intersect: bool = False, f1_drop: float = 0.2, baseline_id: str | None = None,
                 baseline_source: str | None = None, candidate_eval_set_hash: str | None = None,
                 baseline_eval_set_hash: str | None = None, judge: Any = None) -> Comparison:
    """Pair the runs by case id and compare them. Different eval-set hashes (when both are given) or different
    case ids are refused unless `intersect`; the statistics share one set of resamples of the paired cases.
    `judge` (compare.judge.Judge, default the F1 judge) scores pref_win_rate; a judge that fails leaves it NaN
    and says why in `judge_error`, the rest of the comparison stands."""
    if (candidate_eval_set_hash and baseline_eval_set_hash and candidate_eval_set_hash != baseline_eval_set_hash
            and not intersect):
        raise ComparisonError(f"the baseline was measured on another eval set (eval_set.hash {baseline_eval_set_hash}, "
                              f"this run {candidate_eval_set_hash}); compare on the shared case ids with "
                              "--genai-baseline-intersect")
    pairing = pair_cases(candidate_results, baseline_results, intersect=intersect)
    cand, base = pairing.candidate, pairing.baseline
    # regressions read pass, EM and F1 only: the other measurements are not built for every case
    regressed, improved = regressions(case_deltas(pairing, ("passed", "em", "f1"), scores=False), f1_drop)

    stats = bootstrappable(metrics)
    vec_c, vec_b = case_vectors(cand, stats), case_vectors(base, stats)
    stats = {n: s for n, s in stats.items() if not np.isnan(vec_c[n]).all() and not np.isnan(vec_b[n]).all()}
    vec_c, vec_b = {n: vec_c[n] for n in stats}, {n: vec_b[n] for n in stats}
    judge = judge if judge is not None else F1Judge()
    try:
        verdicts, judge_error = judge.judge(pairing.pairs), None
    except JudgeError as exc:
        verdicts, judge_error = None, str(exc)
    wins = verdicts.wins if verdicts is not None else ()
    rate = verdicts.rate if verdicts is not None else math.nan
    tests = paired_bootstrap_tests(vec_c, vec_b, statistics=stats, resamples=resamples, confidence=confidence, seed=seed,
                                   also={"pref_win_rate": wins} if verdicts is not None else None)  # one set of resamples
    win = tests.pop("pref_win_rate", None)
    win_ci = win.ci if win is not None else NAN_CI
    side_c, side_b = point_estimates(vec_c, statistics=stats), point_estimates(vec_b, statistics=stats)
    kept = {n: t for n, t in tests.items() if not (t.ci.n == 0 and as_stat(stats[n]).kind == "mean")}  # else no pair
    adjusted = holm({n: t.p for n, t in kept.items()})
    by_metric: dict[str, MetricComparison] = {}
    for name, t in kept.items():
        mean = as_stat(stats[name]).kind == "mean"
        mde = mde_paired_mean(t.sd, t.ci.n, confidence) if mean else (
            mde_from_se(t.se, confidence) if t.ci.n >= MIN_PAIRS else math.inf)
        mde = negligible(mde, side_c[name], side_b[name])
        by_metric[name] = MetricComparison(name, side_c[name], side_b[name], t.ci.point, t.ci, str(as_stat(stats[name])),
                                           METRICS.get(name).higher_is_better, t.p, adjusted[name], mde, t.sd, t.se)

    flips = {"em": mcnemar_from_pairs([c.em >= 1.0 for c in cand], [b.em >= 1.0 for b in base]),
             "pass": mcnemar_from_pairs([case_passed(c) for c in cand], [case_passed(b) for b in base])}
    return Comparison(baseline_id, baseline_source, candidate_eval_set_hash, baseline_eval_set_hash, intersect,
                      len(pairing.pairs), pairing.only_candidate, pairing.only_baseline, by_metric, flips,
                      tuple(regressed), tuple(improved), rate, win_ci, judge.name, seed, resamples, confidence, f1_drop,
                      wins, verdicts.details if verdicts is not None else {}, judge_error,
                      verdicts.tags if verdicts is not None else {})


def comparison_metrics(comparison: Comparison | None, cis: Mapping[str, CI]) -> dict[str, float]:
    """The flat MLflow metrics: `<m>_ci_low/high` for this run's CIs and, with a baseline, `<m>_delta`,
    `<m>_delta_ci_low/high`, `<m>_delta_p` and `<m>_delta_p_holm` (raw and Holm-adjusted), `<m>_delta_mde`, `em_mcnemar_p`, `pass_mcnemar_p`, `pref_win_rate` and its CI. NaN is left out."""
    out: dict[str, float] = {}

    def put(metric: str, kind: str, value: float) -> None:
        if value is not None and math.isfinite(value):
            out[stat_name(metric, kind)] = float(value)

    for metric, ci in cis.items():
        put(metric, "ci_low", ci.low)
        put(metric, "ci_high", ci.high)
    if comparison is None:
        return out
    for metric, mc in comparison.metrics.items():
        put(metric, "delta", mc.delta)
        put(metric, "delta_ci_low", mc.delta_ci.low)
        put(metric, "delta_ci_high", mc.delta_ci.high)
        put(metric, "delta_p", mc.p)
        put(metric, "delta_p_holm", mc.p_holm)
        put(metric, "delta_mde", mc.mde)
    for what, test in comparison.mcnemar.items():
        put(what, "mcnemar_p", test.p)
    put("pref_win_rate", "value", comparison.pref_win_rate)
    put("pref_win_rate", "ci_low", comparison.pref_win_rate_ci.low)
    put("pref_win_rate", "ci_high", comparison.pref_win_rate_ci.high)
    return out
