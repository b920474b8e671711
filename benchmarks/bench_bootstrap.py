"""Target: bootstrap CIs with 2,000 resamples over 10,000 cases and 20 metrics in under 1 s; comparing a run with
its baseline (pairing, regressions, paired CIs, McNemar, pref_win_rate, plus this run's own CIs) under 1 s.

1. The kernel: `bootstrap_many` on 20 columns shaped like a run's metrics (13 means, 3 with NaN where the metric
   does not apply, 1 sum, and p50/p95/p99 of one latency column with errored cases as NaN).
2. The session's added work: `run_cis` + `compare_runs` on two 10,000-case runs of CaseResults (the candidate
   slightly worse on a subset), with every built-in metric the registry can bootstrap.
Medians of ROUNDS in one process, after one warm-up (numpy import and first allocation not timed)."""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from dataclasses import replace

from _util import REPO, record

sys.path.insert(0, str(REPO))

N = 10_000
METRICS = 20
RESAMPLES = 2000
ROUNDS = 5


def _columns():
    import numpy as np

    rng = np.random.default_rng(0)
    cols, stats = {}, {}
    for i in range(13):
        cols[f"mean_{i}"] = rng.random(N) if i % 2 else (rng.random(N) < 0.6).astype(float)
        stats[f"mean_{i}"] = "mean"
    for i in range(3):  # retrieval-like: no value for cases without gold documents
        v = rng.random(N)
        v[rng.random(N) < 0.3] = np.nan
        cols[f"rate_{i}"], stats[f"rate_{i}"] = v, "mean"
    cols["sum_0"], stats["sum_0"] = rng.gamma(2.0, 0.001, N), "sum"  # a total (cost)
    latency = rng.lognormal(6.0, 0.5, N)
    latency[rng.random(N) < 0.02] = np.nan  # errored cases
    for q in (50, 95, 99):
        cols[f"latency_p{q}_ms"], stats[f"latency_p{q}_ms"] = latency, ("percentile", float(q))
    assert len(cols) == METRICS
    return cols, stats


def _runs():
    from pytest_genai.types import CaseResult

    rnd = random.Random(0)
    base = []
    for i in range(N):
        f1 = 1.0 if rnd.random() < 0.5 else rnd.random()
        gold = i % 3 != 0
        base.append(CaseResult(
            id=f"q{i:05d}", question=f"question {i}", answer="an answer", answers=("gold",), em=float(f1 == 1.0), f1=f1,
            latency_ms=rnd.lognormvariate(6.0, 0.5), input_tokens=rnd.randint(50, 500), output_tokens=rnd.randint(5, 50),
            cost_usd=rnd.random() / 1000, seed=i, hit_at_k=float(rnd.random() < 0.8) if gold else None,
            recall_at_k=rnd.random() if gold else None, reciprocal_rank=rnd.random() if gold else None,
            context_used=rnd.random() < 0.7, safety_flags=(), toxicity=0.01, blocked=False))
    cand = [replace(b, f1=b.f1 * 0.5, em=0.0) if i % 50 == 0 else b for i, b in enumerate(base)]
    return cand, base


def _median_time(fn) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def main() -> dict[str, float]:
    from pytest_genai.compare.comparison import compare_runs, run_cis
    from pytest_genai.stats.bootstrap import bootstrap_many

    cols, stats = _columns()
    kernel_median, kernel_min = _median_time(lambda: bootstrap_many(cols, statistics=stats, resamples=RESAMPLES, seed=0))
    cand, base = _runs()
    comp = compare_runs(cand, base, seed=0, resamples=RESAMPLES)
    compare_median, compare_min = _median_time(lambda: compare_runs(cand, base, seed=0, resamples=RESAMPLES))
    cis_median, cis_min = _median_time(lambda: run_cis(cand, seed=0, resamples=RESAMPLES))
    return {"cases": N, "metrics": METRICS, "resamples": RESAMPLES, "rounds": ROUNDS,
            "bootstrap_many_median_s": kernel_median, "bootstrap_many_min_s": kernel_min,
            "compare_runs_median_s": compare_median, "compare_runs_min_s": compare_min,
            "compare_metrics": len(comp.metrics), "run_cis_median_s": cis_median, "run_cis_min_s": cis_min,
            "comparison_total_median_s": compare_median + cis_median}


if __name__ == "__main__":
    json.dump(record("bootstrap", main()), sys.stdout, indent=2)
    print()
