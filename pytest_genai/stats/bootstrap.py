"""Vectorised percentile bootstrap over cases: one run's CIs, and paired CIs of candidate - baseline.

How it is fast: a resample is a vector of counts (how often each case was drawn), so the means and sums of
every metric for a block of resamples are one matrix product `counts @ values`; a percentile is read from the
counts over the cases sorted by value (the j-th order statistic of a resample is the first sorted case whose
cumulative count exceeds j, found through sums of runs of 64 cases), which equals
`np.percentile(values[idx], q)` ('linear') without materialising or sorting any resample.

Determinism: the resample indices are drawn from `np.random.Generator(PCG64(seed))` in fixed-size blocks, so
they depend only on (seed, number of cases, resamples). Every call with the same three shares the same
resamples: a run's metrics, the paired deltas and the preference win vector are resampled together.

NaN marks a case where a metric does not apply (None in the CaseResult: no gold documents, an errored case's
latency). `bootstrap_ci` drops NaN cases before resampling (the textbook bootstrap of the finite values);
`bootstrap_many` and the paired functions resample all cases (shared indices) and compute each resample's
statistic over its finite cases, as the run's aggregate ignores None. With no NaN both are the same."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence, Union

import numpy as np

from pytest_genai.stats.ci import CI, NAN_CI

Statistic = Union[str, tuple[str, float]]  # "mean", "sum", ("percentile", 95) or "p95"
ArrayLike = Union[Sequence[float], np.ndarray]

_BLOCK_ELEMENTS = 1 << 21  # resample indices per block (~8 MB int32): memory stays flat whatever the size


@dataclass(frozen=True)
class Stat:
    """A normalised statistic: kind "mean" | "sum" | "percentile" (q in [0, 100] for percentiles)."""

    kind: str
    q: float = math.nan

    def __str__(self) -> str:
        return f"p{self.q:g}" if self.kind == "percentile" else self.kind


def as_stat(statistic: Statistic | Stat) -> Stat:
    if isinstance(statistic, Stat):
        return statistic
    if statistic in ("mean", "sum"):
        return Stat(str(statistic))
    if isinstance(statistic, str) and statistic.startswith("p") and statistic[1:].replace(".", "", 1).isdigit():
        statistic = ("percentile", float(statistic[1:]))
    if isinstance(statistic, tuple) and len(statistic) == 2 and statistic[0] == "percentile":
        q = float(statistic[1])
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        return Stat("percentile", q)
    raise ValueError(f"unknown statistic {statistic!r}: use 'mean', 'sum', ('percentile', q) or 'p<q>'")


# The registry's aggregation kinds (metrics/registry.py `Metric.aggregation`) and what the bootstrap resamples.
# A "rate" is the mean of a 0/1 per-case flag over the cases where it applies (NaN elsewhere). "count" (cases
# with gold docs, env drift), "custom" (user run metrics with no per-case values), "max" and "min" (the bootstrap
# of an extreme is inconsistent) have no CI.
AGGREGATION_STATISTICS: Mapping[str, Statistic | None] = {
    "mean": "mean", "rate": "mean", "sum": "sum",
    "p50": ("percentile", 50.0), "p95": ("percentile", 95.0), "p99": ("percentile", 99.0),
    "count": None, "custom": None, "max": None, "min": None,
}


def statistic_for(aggregation: str) -> Statistic | None:
    """The bootstrap statistic of a registry aggregation kind, or None when that kind gets no CI."""
    if aggregation in AGGREGATION_STATISTICS:
        return AGGREGATION_STATISTICS[aggregation]
    if aggregation.startswith("p") and aggregation[1:].isdigit():
        return ("percentile", float(aggregation[1:]))
    return None


def _check(resamples: int, confidence: float, seed: int) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def resample_indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The resample indices in blocks of rows (rows, n), int32: the same for the same (n, resamples, seed)."""
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    rows = max(1, min(resamples, _BLOCK_ELEMENTS // max(n, 1)))
    done = 0
    while done < resamples:
        r = min(rows, resamples - done)
        yield rng.integers(0, n, size=(r, n), dtype=np.int32)
        done += r


def _count_blocks(n: int, resamples: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, counts (rows, n)): how often each case is drawn in each resample."""
    start = 0
    for idx in resample_indices(n, resamples, seed):
        r = idx.shape[0]
        flat = (idx + (np.arange(r, dtype=np.int32) * n)[:, None]).ravel()
        yield start, np.bincount(flat, minlength=r * n).reshape(r, n)
        start += r


class _Columns:
    """Per-resample statistics of several columns of one case axis, computed together block by block."""

    def __init__(self, columns: Sequence[tuple[np.ndarray, Stat]]) -> None:
        self.columns = columns
        self.linear = [i for i, (_, s) in enumerate(columns) if s.kind in ("mean", "sum")]
        self.values = np.column_stack([np.nan_to_num(columns[i][0], nan=0.0) for i in self.linear]) if self.linear else None
        self.with_nan = [i for i in self.linear if columns[i][1].kind == "mean" and np.isnan(columns[i][0]).any()]
        self.masks = np.column_stack([~np.isnan(columns[i][0]) for i in self.with_nan]).astype(np.float64) if self.with_nan else None
        self.groups: dict[int, tuple[np.ndarray, np.ndarray, list[int]]] = {}  # percentile columns by array
        for i, (v, s) in enumerate(columns):
            if s.kind == "percentile":
                key = id(v)
                if key not in self.groups:
                    finite = np.flatnonzero(~np.isnan(v))
                    order = finite[np.argsort(v[finite], kind="stable")]
                    self.groups[key] = (order, v[order], [])
                self.groups[key][2].append(i)

    def block(self, counts: np.ndarray) -> list[np.ndarray]:
        """Each column's statistic for each row of `counts` (rows, n); NaN where a row has no finite case."""
        out: list[np.ndarray] = [np.empty(0)] * len(self.columns)
        if self.linear:
            weights = counts.astype(np.float64)
            sums = weights @ self.values
            drawn = weights @ self.masks if self.masks is not None else None
            n = counts.shape[1]
            with np.errstate(invalid="ignore", divide="ignore"):
                for j, i in enumerate(self.linear):
                    if self.columns[i][1].kind == "sum":
                        out[i] = sums[:, j]
                    elif i in self.with_nan:
                        out[i] = sums[:, j] / drawn[:, self.with_nan.index(i)]
                    else:
                        out[i] = sums[:, j] / n
        for order, sorted_values, members in self.groups.values():
            ranked = _RankedCounts(np.take(counts, order, axis=1))
            for i in members:
                out[i] = ranked.percentile(sorted_values, self.columns[i][1].q)
        return out

    def distributions(self, resamples: int, seed: int) -> list[np.ndarray]:
        n = len(self.columns[0][0])
        dists = [np.full(resamples, np.nan) for _ in self.columns]
        if n == 0:
            return dists
        for start, counts in _count_blocks(n, resamples, seed):
            for dist, block in zip(dists, self.block(counts)):
                dist[start:start + counts.shape[0]] = block
        return dists

    def points(self) -> list[float]:
        n = len(self.columns[0][0])
        if n == 0:
            return [math.nan] * len(self.columns)
        return [float(b[0]) for b in self.block(np.ones((1, n), dtype=np.int64))]


class _RankedCounts:
    """Counts of one block of resamples over the finite cases sorted by value, with a two-level index (sums of
    fixed-size runs of cases) so an order statistic is found without a cumulative sum over every case."""

    RUN = 64

    def __init__(self, counts: np.ndarray) -> None:
        rows, n = counts.shape
        full = n // self.RUN
        parts = [counts[:, :full * self.RUN].reshape(rows, full, self.RUN).sum(axis=2)]
        if n % self.RUN:
            parts.append(counts[:, full * self.RUN:].sum(axis=1, keepdims=True))
        self.counts = counts
        self.run_cum = np.cumsum(np.concatenate(parts, axis=1), axis=1) if n else np.zeros((rows, 0), np.int64)
        self.drawn = self.run_cum[:, -1] if n else np.zeros(rows, np.int64)  # finite cases in each resample

    def order_stat(self, j: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Index (in sorted order) of the j-th smallest drawn case (0-based) of each of `rows`."""
        run_cum = self.run_cum[rows]
        run = (run_cum <= j[:, None]).sum(axis=1)  # the run holding the j-th draw
        before = np.where(run > 0, np.take_along_axis(run_cum, np.maximum(run - 1, 0)[:, None], axis=1)[:, 0], 0)
        n = self.counts.shape[1]
        cols = run[:, None] * self.RUN + np.arange(self.RUN)
        inside = np.where(cols < n, self.counts[rows[:, None], np.minimum(cols, n - 1)], 0)
        return run * self.RUN + (np.cumsum(inside, axis=1) <= (j - before)[:, None]).sum(axis=1)

    def percentile(self, sorted_values: np.ndarray, q: float) -> np.ndarray:
        """numpy's 'linear' percentile of each resample: position (k - 1) q / 100 between closest ranks."""
        out = np.full(self.drawn.shape[0], np.nan)
        rows = np.flatnonzero(self.drawn > 0)
        if rows.size == 0:
            return out
        k = self.drawn[rows]
        pos = (k - 1) * q / 100.0
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, k - 1)
        below = sorted_values[self.order_stat(lo, rows)]
        above = sorted_values[self.order_stat(hi, rows)]
        out[rows] = below + (above - below) * (pos - lo)
        return out


def _interval(dist: np.ndarray, point: float, confidence: float, n: int) -> CI:
    finite = dist[np.isfinite(dist)]
    if finite.size == 0 or not math.isfinite(point):
        return CI(math.nan, math.nan, point, math.nan, n)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return CI(float(low), float(high), point, float(high - low) / 2.0, n)


def _as_array(values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected one value per case (a 1-D array), got shape {arr.shape}")
    return arr


def bootstrap_ci(values: ArrayLike, *, statistic: Statistic = "mean", resamples: int = 2000,
                 confidence: float = 0.95, seed: int) -> CI:
    """Percentile-bootstrap CI of `statistic` over the cases; NaN cases are dropped first (see the module doc)."""
    _check(resamples, confidence, seed)
    arr = _as_array(values)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return NAN_CI
    return bootstrap_many({"x": arr}, statistics=statistic, resamples=resamples, confidence=confidence, seed=seed)["x"]


def _per_column(names: Sequence[str], statistics: Statistic | Mapping[str, Statistic]) -> list[Stat]:
    if isinstance(statistics, Mapping):
        missing = [n for n in names if n not in statistics]
        if missing:
            raise ValueError(f"no statistic given for {', '.join(missing)}")
        return [as_stat(statistics[n]) for n in names]
    return [as_stat(statistics)] * len(names)


def _aligned(matrix: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    arrays = {name: _as_array(v) for name, v in matrix.items()}
    lengths = {a.size for a in arrays.values()}
    if len(lengths) > 1:
        raise ValueError(f"all metrics need one value per case; got lengths {sorted(lengths)}")
    return arrays


def bootstrap_many(matrix: Mapping[str, ArrayLike], *, statistics: Statistic | Mapping[str, Statistic] = "mean",
                   resamples: int = 2000, confidence: float = 0.95, seed: int) -> dict[str, CI]:
    """CIs of many metrics over the same cases with one shared set of resamples (values aligned by case; NaN:
    the metric does not apply to that case). A metric with no finite value gets a CI of NaNs (n = 0)."""
    _check(resamples, confidence, seed)
    arrays = _aligned(matrix)
    if not arrays:
        return {}
    names = list(arrays)
    stats = _per_column(names, statistics)
    cols = _Columns([(arrays[n], s) for n, s in zip(names, stats)])
    points, dists = cols.points(), cols.distributions(resamples, seed)
    finite = {n: int(np.count_nonzero(~np.isnan(arrays[n]))) for n in names}
    return {n: _interval(d, p, confidence, finite[n]) if finite[n] else NAN_CI for n, p, d in zip(names, points, dists)}


def point_estimates(matrix: Mapping[str, ArrayLike], *,
                    statistics: Statistic | Mapping[str, Statistic] = "mean") -> dict[str, float]:
    """Each metric's statistic over its finite cases (what the bootstrap CIs are centred on); NaN when none."""
    arrays = _aligned(matrix)
    if not arrays:
        return {}
    names = list(arrays)
    cols = _Columns([(arrays[n], s) for n, s in zip(names, _per_column(names, statistics))])
    return dict(zip(names, cols.points()))


@dataclass(frozen=True)
class PairedDelta:
    """A paired comparison of one metric: the CI of candidate - baseline, the two-sided bootstrap p-value of "no
    difference" read from the same resamples (percentile inversion, so p < 1 - confidence exactly when the CI
    excludes 0, up to the +1 correction; for a mean never below 2^(1-m), the smallest p an exact sign-flip test can
    give with m non-zero differences: 3 pairs alone cannot be "p = 0.001"), the bootstrap standard error of the delta
    and, for a mean, the sample standard deviation of the per-case differences (NaN otherwise)."""

    ci: CI
    p: float = math.nan
    se: float = math.nan
    sd: float = math.nan


def _p_and_se(dist: np.ndarray, point: float) -> tuple[float, float]:
    finite = dist[np.isfinite(dist)]
    if finite.size == 0 or not math.isfinite(point):
        return math.nan, math.nan
    b = finite.size
    below = (1.0 + np.count_nonzero(finite <= 0.0)) / (b + 1.0)
    above = (1.0 + np.count_nonzero(finite >= 0.0)) / (b + 1.0)
    se = float(np.std(finite, ddof=1)) if b > 1 else math.nan
    return float(min(1.0, 2.0 * min(below, above))), se


def paired_bootstrap_tests(candidate: Mapping[str, ArrayLike], baseline: Mapping[str, ArrayLike], *,
                           statistics: Statistic | Mapping[str, Statistic] = "mean", resamples: int = 2000,
                           confidence: float = 0.95, seed: int,
                           also: Mapping[str, ArrayLike] | None = None) -> dict[str, PairedDelta]:
    """Paired comparisons of candidate - baseline per metric, cases aligned by position, both runs resampled with
    the same indices. "mean": the mean of the per-case differences over the cases where both apply; "sum" and
    percentiles: the difference of the two statistics, each over its own finite cases. `also`: one-sample
    columns over the same pairs (a per-pair win vector) bootstrapped ("mean") on the same resamples."""
    _check(resamples, confidence, seed)
    if set(candidate) != set(baseline):
        raise ValueError(f"candidate and baseline name different metrics: {sorted(set(candidate) ^ set(baseline))}")
    extra = _aligned(also or {})
    cand, base = _aligned(candidate), _aligned(baseline)
    sizes = {a.size for a in (*cand.values(), *base.values(), *extra.values())}
    if len(sizes) > 1:
        raise ValueError("candidate and baseline need the same number of paired cases")
    clash = sorted(set(extra) & set(cand))
    if clash:
        raise ValueError(f"`also` repeats metric names: {', '.join(clash)}")
    names = list(cand)
    if not names and not extra:
        return {}
    stats = _per_column(names, statistics)
    columns: list[tuple[np.ndarray, Stat]] = []
    slots: dict[str, tuple[int, ...]] = {}
    for name, s in zip(names, stats):
        if s.kind == "mean":
            slots[name] = (len(columns),)
            columns.append((cand[name] - base[name], s))  # NaN where either side does not apply
        else:
            slots[name] = (len(columns), len(columns) + 1)
            columns += [(cand[name], s), (base[name], s)]
    for name, values in extra.items():
        slots[name] = (len(columns),)
        columns.append((values, Stat("mean")))
    cols = _Columns(columns)
    points, dists = cols.points(), cols.distributions(resamples, seed)
    out: dict[str, PairedDelta] = {}
    for name in names:
        both = int(np.count_nonzero(~np.isnan(cand[name]) & ~np.isnan(base[name])))
        if len(slots[name]) == 1:
            i, = slots[name]
            dist, point = dists[i], points[i]
            diffs = columns[i][0][~np.isnan(columns[i][0])]
            sd = float(np.std(diffs, ddof=1)) if diffs.size > 1 else math.nan
        else:
            i, j = slots[name]
            with np.errstate(invalid="ignore"):
                dist, point = dists[i] - dists[j], points[i] - points[j]
            sd = math.nan
        p, se = _p_and_se(dist, point)
        if len(slots[name]) == 1:  # a mean of differences: no smaller p than an exact sign-flip test could give
            nonzero = int(np.count_nonzero(columns[slots[name][0]][0][~np.isnan(columns[slots[name][0]][0])]))
            p = max(p, min(1.0, 2.0 ** (1 - nonzero))) if math.isfinite(p) else p
        out[name] = PairedDelta(_interval(dist, point, confidence, both), p, se, sd)
    for name in extra:
        i, = slots[name]
        out[name] = PairedDelta(_interval(dists[i], points[i], confidence, int(np.count_nonzero(~np.isnan(extra[name])))))
    return out


def paired_bootstrap_many(candidate: Mapping[str, ArrayLike], baseline: Mapping[str, ArrayLike], *,
                          statistics: Statistic | Mapping[str, Statistic] = "mean", resamples: int = 2000,
                          confidence: float = 0.95, seed: int,
                          also: Mapping[str, ArrayLike] | None = None) -> dict[str, CI]:
    """The paired CIs of `paired_bootstrap_tests` alone."""
    return {name: d.ci for name, d in paired_bootstrap_tests(candidate, baseline, statistics=statistics,
                                                             resamples=resamples, confidence=confidence, seed=seed,
                                                             also=also).items()}


def paired_bootstrap_delta(candidate: ArrayLike, baseline: ArrayLike, *, statistic: Statistic = "mean",
                           resamples: int = 2000, confidence: float = 0.95, seed: int) -> CI:
    """Paired-bootstrap CI of candidate - baseline over cases aligned by position (see paired_bootstrap_many)."""
    return paired_bootstrap_many({"x": candidate}, {"x": baseline}, statistics=statistic, resamples=resamples,
                                 confidence=confidence, seed=seed)["x"]
