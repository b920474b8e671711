"""Metrics: one registry (`registry.py`), the built-in metrics (`builtin.py`), monitoring's own names
(`monitoring.py`), and the pure functions behind them (text overlap, retrieval, aggregates).

Importing the package registers the built-ins and then monitoring's names, in that order (the terminal's order),
so every reader of `METRICS` sees them: no module has to remember to import them first."""

from pytest_genai.metrics import builtin, monitoring, registry
from pytest_genai.metrics.aggregate import aggregate, mean, percentile
from pytest_genai.metrics.text import em_score, f1_score, normalize_answer

__all__ = ["aggregate", "builtin", "em_score", "f1_score", "mean", "monitoring", "normalize_answer", "percentile",
           "registry"]
