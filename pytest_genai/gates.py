"""Promotion gates checked against the run's aggregates, their confidence intervals and the baseline.

The grammar of a `gates:` entry (metric: expression):

    f1: ">= 0.6"                      the value (point estimate) against a threshold, as ever (>=, <=, >, <, ==, !=)
    f1: "ci_low >= 0.6"               a bound of the metric's bootstrap CI: the lower bound must clear 0.6
    latency_p95_ms: "ci_high <= 1200" the upper bound must stay under 1200
    f1: ">= baseline - 0.02"          non-inferiority: the LOWER bound of the paired CI of candidate - baseline
                                      must be >= -0.02 (the candidate is at most 0.02 worse, with confidence)
    latency_p95_ms: "<= baseline + 100"  lower-is-better: the UPPER bound of the paired delta CI must be <= +100
    f1: ">= baseline"                 margin 0; "> baseline + 0.01" asks for a sure improvement

A baseline gate (or any gate on a metric measured against the baseline: pref_win_rate) without a baseline is
skipped (Gate.skipped, reason "skipped: ..."), or fails with `require_baseline`.

Power: a non-inferiority or "no drop" gate ('>= baseline - m', '>= baseline', '<= baseline + m') whose margin m is
smaller than the metric's minimum detectable effect at this eval set's size (compare/comparison.py: power 0.8 at
the CI's level) asks about a change the set cannot see: the gate is marked `underpowered` with a warning in its
reason, or fails with `require_power` (compare.require_power).
Light: no numpy; CIs are read through their `low`/`high`/`point` attributes."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence, Union

from pytest_genai.runlog import Gate

GateResult = Gate  # the run record's gate verdict

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_GATE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_CI = re.compile(rf"^\s*ci_(low|high)\s*(>=|<=|>|<)\s*({_NUMBER})\s*$")
_BASELINE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*baseline\s*(?:([-+])\s*(\S+?))?\s*$")

SKIPPED = "skipped:"
BASELINE_METRICS = ("pref_win_rate",)  # measured against the baseline: any gate on one needs a baseline
FORMS = ("'>= 0.6' (the value against a threshold; also <=, >, <, ==, !=), "
         "'ci_low >= 0.6' or 'ci_high <= 1200' (a bound of the metric's confidence interval), "
         "'>= baseline - 0.02' or '<= baseline + 100' (non-inferiority: a bound of the paired CI of candidate - "
         "baseline against the margin), '>= baseline' (margin 0)")


@dataclass(frozen=True)
class GateSpec:
    """A parsed gate. kind "point": value op threshold; "ci": CI[bound] op threshold; "baseline": the paired
    delta CI's bound op margin, with bound "low" for >=/> and "high" for <=/< (margin: the signed offset)."""

    kind: str
    op: str
    threshold: float | None = None
    margin: float | None = None
    bound: str | None = None
    expression: str = ""

    def __str__(self) -> str:
        if self.kind == "ci":
            return f"ci_{self.bound} {self.op} {self.threshold:g}"
        if self.kind == "baseline":
            assert self.margin is not None
            return f"{self.op} baseline" + (f" {'-' if self.margin < 0 else '+'} {abs(self.margin):g}" if self.margin else "")
        return f"{self.op} {self.threshold:g}"


def _not_a_gate(expression: Any, why: str = "") -> ValueError:
    return ValueError(f"{expression!r} is not a gate{': ' + why if why else ''}; write it like {FORMS}")


def _finite(token: str, expression: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise _not_a_gate(expression, f"{token!r} is not a number") from None
    if not math.isfinite(value):
        raise _not_a_gate(expression, f"{token!r} is not a finite number")
    return value


def parse_gate_spec(expression: str) -> GateSpec:
    """Parse any accepted form (see the module doc); ValueError lists the accepted forms with examples."""
    if not isinstance(expression, str):
        raise _not_a_gate(expression, "a gate is a string")
    m = _BASELINE.match(expression)
    if m:
        op, sign, token = m.groups()
        if op in ("==", "!="):
            raise _not_a_gate(expression, "a baseline gate takes >=, >, <= or <")
        if token is not None and token.startswith(("-", "+")):
            raise _not_a_gate(expression, "write the margin's sign once, as in 'baseline - 0.02'")
        margin = 0.0 if sign is None else _finite(token, expression) * (-1.0 if sign == "-" else 1.0)
        return GateSpec("baseline", op, None, margin, "low" if op in (">=", ">") else "high", expression)
    m = _CI.match(expression)
    if m:
        bound, op, number = m.groups()
        return GateSpec("ci", op, _finite(number, expression), None, bound, expression)
    if re.match(r"^\s*ci_", expression):
        raise _not_a_gate(expression, "a CI gate is 'ci_low' or 'ci_high', then >=, >, <= or <, then a number")
    m = _GATE.match(expression)
    if not m:
        raise _not_a_gate(expression)
    return GateSpec("point", m.group(1), _finite(m.group(2), expression), None, None, expression)


def parse_gate(expression: str) -> tuple[str, float]:
    """A point gate only (the original form): `'>= 0.6'` -> ('>=', 0.6)."""
    m = _GATE.match(expression)
    if not m:
        raise ValueError(f"not a comparison: {expression!r}")
    return m.group(1), float(m.group(2))


def gate_problem(metric: str, expression: str, higher_is_better: bool | None) -> str | None:
    """For config validation: why an expression is refused, or a gate whose direction contradicts the metric's
    (a non-inferiority gate '>= baseline - m' on a lower-is-better metric passes however much worse it gets)."""
    try:
        spec = parse_gate_spec(expression)
    except ValueError as exc:
        return str(exc)
    if spec.kind == "baseline" and higher_is_better is not None:
        wants_higher = spec.op in (">=", ">")
        if wants_higher != higher_is_better:
            better = "higher" if higher_is_better else "lower"
            mirrored = f"{'>=' if higher_is_better else '<='} baseline {'-' if higher_is_better else '+'} {abs(spec.margin or 0):g}"
            return f"{metric} is {better}-is-better: {expression.strip()!r} gates the wrong side; did you mean {mirrored!r}?"
    return None


def _fmt(x: float | None) -> str:
    return "None" if x is None else f"{x:.4g}"


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _ci_text(ci: Any) -> str:
    return f"[{_fmt(ci.low)}, {_fmt(ci.high)}]"


def tolerates_no_drop(spec: GateSpec) -> bool:
    """A non-inferiority or "no drop" gate: the margin allows (or is) no change in the metric's better direction."""
    assert spec.margin is not None
    return spec.kind == "baseline" and (spec.margin <= 0 if spec.op in (">=", ">") else spec.margin >= 0)


def _power(gate: Gate, spec: GateSpec, mde: float | None, pairs: int, require_power: bool) -> Gate:
    """The gate with its metric's MDE, and marked underpowered (failed with require_power) when its margin is
    smaller than what the set can detect."""
    if spec.kind != "baseline" or mde is None or math.isnan(mde):
        return gate
    assert spec.margin is not None
    known = mde if math.isfinite(mde) else None  # infinite: too few pairs to estimate the spread
    if not tolerates_no_drop(spec) or abs(spec.margin) >= mde:
        return replace(gate, mde=known)
    why = (f"underpowered: margin {abs(spec.margin):g} < minimum detectable effect {_fmt(mde)} at {pairs} paired "
           f"cases (power 0.8)" if known is not None else
           f"underpowered: {pairs} paired case(s) are too few to estimate what this set can detect (fewer than 10)")
    if require_power:
        return replace(gate, mde=known, underpowered=True, passed=False,
                       reason=f"{why}, compare.require_power" + (f"; {gate.reason}" if gate.reason else ""))
    return replace(gate, mde=known, underpowered=True, reason=(f"{gate.reason}; " if gate.reason else "") + why)


def _one(metric: str, expression: str, spec: GateSpec, metrics: Mapping[str, float], cis: Mapping[str, Any],
         deltas: Mapping[str, Any], baseline_available: bool, require_baseline: bool, baseline_note: str) -> Gate:
    value = metrics.get(metric)
    if (spec.kind == "baseline" or metric in BASELINE_METRICS) and not baseline_available:
        if require_baseline:
            return Gate(metric, expression, value, False, f"no baseline ({baseline_note}) and a baseline is required")
        return Gate(metric, expression, value, False, f"{SKIPPED} no baseline ({baseline_note})", skipped=True)
    if value is None:
        return Gate(metric, expression, None, False, "not computed by this run")
    if _is_nan(value):
        return Gate(metric, expression, value, False, "no data (NaN)")
    op = _OPS[spec.op]
    if spec.kind == "point":
        assert spec.threshold is not None
        return Gate(metric, expression, value, op(value, spec.threshold))
    if spec.kind == "ci":
        ci = cis.get(metric)
        if ci is None:
            return Gate(metric, expression, value, False, "no confidence interval for this metric")
        bound = ci.low if spec.bound == "low" else ci.high
        if _is_nan(float(bound)):
            return Gate(metric, expression, value, False, "no data (NaN CI)")
        assert spec.threshold is not None
        return Gate(metric, expression, value, op(bound, spec.threshold), f"ci_{spec.bound} {_fmt(bound)}, CI {_ci_text(ci)}")
    delta = deltas.get(metric)
    if delta is None:
        return Gate(metric, expression, value, False, "no paired comparison with the baseline for this metric")
    bound = delta.low if spec.bound == "low" else delta.high
    if _is_nan(float(bound)):
        return Gate(metric, expression, value, False, "no data (NaN delta CI)")
    assert spec.margin is not None
    return Gate(metric, expression, value, op(bound, spec.margin),
                f"delta {_fmt(delta.point)}, delta CI {_ci_text(delta)}, {spec.bound} bound {spec.op} {spec.margin:+g} needed")


GateExpressions = Union[str, Sequence[str]]


def evaluate_gates(gates: Mapping[str, GateExpressions], metrics: Mapping[str, float], *,
                   cis: Mapping[str, Any] | None = None, deltas: Mapping[str, Any] | None = None,
                   baseline_available: bool = True, require_baseline: bool = False,
                   baseline_note: str = "none given or resolved", mde: Mapping[str, float] | None = None,
                   require_power: bool = False, pairs: int = 0) -> list[Gate]:
    """One Gate per expression (a metric may carry one expression or a list). `cis`: metric -> this run's CI;
    `deltas`: metric -> paired CI of candidate - baseline. Gate.value is the metric's value; the reason of a CI
    or baseline gate names the bound it compared. A baseline gate without a baseline is skipped (see is_skipped),
    or fails when `require_baseline`. `mde`: metric -> minimum detectable effect of its paired delta at `pairs`
    cases (see the module doc's Power). A malformed expression raises ValueError naming the metric."""
    out: list[Gate] = []
    for metric, expressions in gates.items():
        for expression in ([expressions] if isinstance(expressions, str) else list(expressions)):
            try:
                spec = parse_gate_spec(expression)
            except ValueError as exc:
                raise ValueError(f"gates.{metric}: {exc}") from None
            gate = _one(metric, expression, spec, metrics, cis or {}, deltas or {}, baseline_available,
                        require_baseline, baseline_note)
            if not gate.skipped and gate.value is not None and not _is_nan(gate.value):
                gate = _power(gate, spec, (mde or {}).get(metric), pairs, require_power)
            out.append(gate)
    return out


def needs_baseline(gates: Mapping[str, GateExpressions]) -> bool:
    """True when any gate compares with the baseline (so a missing baseline matters)."""
    return any(m in BASELINE_METRICS or parse_gate_spec(e).kind == "baseline"
               for m, es in gates.items() for e in ([es] if isinstance(es, str) else es))
