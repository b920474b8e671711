"""Promotion gates: `metric: '>= 0.6'` checked against the run's aggregates."""

from __future__ import annotations

import math
import operator
import re
from typing import Callable, Mapping

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


def parse_gate(expression: str) -> tuple[str, float]:
    m = _GATE.match(expression)
    if not m:
        raise ValueError(f"not a comparison: {expression!r}")
    return m.group(1), float(m.group(2))


def evaluate_gates(gates: Mapping[str, str], metrics: Mapping[str, float]) -> list[Gate]:
    out: list[Gate] = []
    for metric, expression in gates.items():
        op, threshold = parse_gate(expression)
        value = metrics.get(metric)
        if value is None:
            out.append(Gate(metric, expression, None, False, "not computed by this run"))
        elif isinstance(value, float) and math.isnan(value):
            out.append(Gate(metric, expression, value, False, "no data (NaN)"))
        else:
            out.append(Gate(metric, expression, value, _OPS[op](value, threshold)))
    return out
