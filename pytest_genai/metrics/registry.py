"""The metric registry: one entry per metric holds how it is computed per case, how it is aggregated,
whether higher is better, its unit and a one-line doc. Gate names, the terminal table, the docs reference page
(docs/reference/metrics.md) and the MLflow metric names all come from here, so adding a metric is one registered function:

    from pytest_genai import register_metric

    @register_metric("answer_words", doc="words in the answer", unit="words", higher_is_better=None)
    def answer_words(case, answer, result):
        return len(answer.text.split()) if answer else None

Pure and light: no numpy, no import of any scoring library."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from pytest_genai.registry import Registry
from pytest_genai.types import CaseResult

# A per-case scorer: (case, answer or None, the result scored so far) -> value, or None (not applicable).
PerCase = Callable[[Any, Any, CaseResult], "float | None"]
# A run-level aggregation: (results, run facts such as cases_total and env_drift) -> value or None (not computed).
RunAggregate = Callable[[Sequence[CaseResult], Mapping[str, float]], "float | None"]


@dataclass(frozen=True)
class Metric:
    name: str
    doc: str
    aggregate: RunAggregate
    higher_is_better: bool | None = None  # None: neither (a count, a size)
    unit: str = ""
    group: str = "custom"
    per_case: PerCase | None = None  # set for metrics whose per-case value lands in CaseResult.scores
    available: str | None = None  # None: computed; else why a gate on it is refused (a later feature)
    aggregation: str = "custom"  # how the per-case values are combined (for docs)

    @property
    def direction(self) -> str:
        return {True: "higher", False: "lower", None: "-"}[self.higher_is_better]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default 'linear' method)."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


_AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": mean,
    "sum": lambda xs: float(sum(xs)),
    "max": lambda xs: float(max(xs)) if xs else float("nan"),
    "min": lambda xs: float(min(xs)) if xs else float("nan"),
    "p50": lambda xs: percentile(xs, 50),
    "p95": lambda xs: percentile(xs, 95),
    "p99": lambda xs: percentile(xs, 99),
}


def _check(entry: Any) -> bool:
    return isinstance(entry, Metric)


METRICS: Registry[Metric] = Registry("metric", check=_check)


def scores_of(name: str) -> Callable[[CaseResult], "float | None"]:
    return lambda r: r.scores.get(name)


def register_metric(name: str, *, doc: str, higher_is_better: bool | None = None, unit: str = "",
                    aggregation: str = "mean", group: str = "custom", replace: bool = False,
                    ) -> Callable[[PerCase], PerCase]:
    """Decorator: a per-case scorer `(case, answer, result) -> float | None` becomes a run metric named
    `name` (aggregated by `aggregation` over the cases where it is not None), gateable and logged."""
    if aggregation not in _AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r} for metric {name!r} (known: {', '.join(_AGGREGATIONS)})")
    combine = _AGGREGATIONS[aggregation]
    value_of = scores_of(name)

    def run(results: Sequence[CaseResult], facts: Mapping[str, float]) -> float | None:
        values = [v for v in (value_of(r) for r in results) if v is not None]
        return combine(values) if values else None

    def decorate(fn: PerCase) -> PerCase:
        METRICS.register(name, Metric(name, doc, run, higher_is_better, unit, group, fn, aggregation=aggregation),
                         replace=replace)
        return fn
    return decorate


def add_run_metric(name: str, doc: str, aggregate: RunAggregate, *, higher_is_better: bool | None = None,
                   unit: str = "", group: str = "run", available: str | None = None, aggregation: str = "custom") -> None:
    """A metric computed from the whole run (percentiles, rates, counts) rather than one value per case."""
    METRICS.register(name, Metric(name, doc, aggregate, higher_is_better, unit, group, None, available, aggregation))


def per_case_scorers() -> list[Metric]:
    return [m for m in (METRICS.get(n) for n in METRICS) if m.per_case is not None]


def gateable() -> tuple[str, ...]:
    return METRICS.names()


def aggregate(results: Sequence[CaseResult], facts: Mapping[str, float]) -> dict[str, float]:
    """Every registered metric this run can compute; a metric returning None is left out (not a 0)."""
    out: dict[str, float] = {}
    for name in METRICS:
        metric = METRICS.get(name)
        if metric.available is not None:
            continue
        value = metric.aggregate(results, facts)
        if value is not None:
            out[name] = float(value)
    return out


def markdown_table() -> str:
    """The metric table of docs/reference/metrics.md (scripts/gen_docs.py writes it; tests/test_docs.py checks that
    the page is current)."""
    rows = ["| metric | unit | better | how | what it measures |", "|---|---|---|---|---|"]
    for name in METRICS:
        m = METRICS.get(name)
        doc = m.doc + (f" ({m.available})" if m.available else "")
        rows.append(f"| `{name}` | {m.unit or '-'} | {m.direction} | {m.aggregation} | {doc} |")
    return "\n".join(rows)



if __name__ == "__main__":  # the docs reference page's metric table: python -m pytest_genai.metrics.registry
    from pytest_genai.metrics import registry as _real  # this file runs as __main__: use the package's registry

    print(_real.markdown_table())
