"""A window of request records as the eval's metrics: each record becomes a CaseResult and the eval's own
registered aggregations compute latency, tokens, cost, error and safety rates, so a number on the monitoring
run means what it means on the eval run. Feedback labels add em/f1 (over the labelled share) and
feedback_positive_rate; the eval run's retrieval scores and answers give the drift signals. Pure: no MLflow."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from pytest_genai.metrics.monitoring import COUNTS, TRAFFIC_METRICS, register
from pytest_genai.metrics.registry import METRICS, percentile
from pytest_genai.metrics.text import em_f1
from pytest_genai.stats.ks import ks_statistic
from pytest_genai.types import CaseResult

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
LOW_SCORE_PERCENTILE = 5.0


class FeedbackError(Exception):
    """A feedback file that cannot be read; the message names the line."""


@dataclass(frozen=True)
class Window:
    """[start, end] in epoch seconds (None: open), or the last `last` records."""

    start: float | None = None
    end: float | None = None
    last: int | None = None

    def describe(self) -> str:
        if self.last is not None:
            return f"last {self.last} requests"
        a = iso(self.start) if self.start is not None else "the first record"
        b = iso(self.end) if self.end is not None else "now"
        return f"{a} .. {b}"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse_time(text: str, now: float) -> float:
    """`1h`, `30m`, `2d` (that long ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _SECONDS[m.group(2)]
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30m, 1h, 2d) nor an ISO time (2026-11-02T10:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def select(records: Sequence[Mapping[str, Any]], window: Window, model_id: str | None) -> tuple[list[Mapping[str, Any]], int]:
    """The records of `model_id` in the window (oldest first), and how many records of other models were seen."""
    mine = [r for r in records if model_id is None or r.get("model_id") == model_id]
    others = len(records) - len(mine)
    mine.sort(key=lambda r: float(r["ts"]))
    if window.start is not None:
        mine = [r for r in mine if float(r["ts"]) >= window.start]
    if window.end is not None:
        mine = [r for r in mine if float(r["ts"]) <= window.end]
    if window.last is not None:
        mine = mine[-window.last:] if window.last > 0 else []
    return mine, others


def to_result(record: Mapping[str, Any], em: float = 0.0, f1: float = 0.0, answers: tuple[str, ...] = ()) -> CaseResult:
    flags = record.get("safety_flags")
    return CaseResult(
        id=str(record["request_id"]), question=str(record.get("question") or ""), answer=record.get("answer"),
        answers=answers, em=em, f1=f1, latency_ms=float(record.get("latency_ms") or 0.0),
        input_tokens=int(record.get("input_tokens") or 0), output_tokens=int(record.get("output_tokens") or 0),
        cost_usd=float(record.get("cost_usd") or 0.0), seed=0, error=record.get("error"),
        safety_flags=tuple(flags) if isinstance(flags, list) else None, toxicity=record.get("toxicity"),
        blocked=bool(record.get("blocked")), critical=bool(record.get("critical")))


def traffic_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The eval's metric names over served traffic, by the eval's own aggregations; `requests_total` always."""
    register()
    results = [to_result(r) for r in records]
    out: dict[str, float] = {"requests_total": float(len(records))}
    if not results:  # counts are 0; rates and percentiles are not computed (their SLOs are skipped)
        out.update({name: 0.0 for name in TRAFFIC_METRICS if name in COUNTS})
        return out
    facts = {"cases_total": float(len(results))}
    for name in TRAFFIC_METRICS:
        if name in METRICS:
            value = METRICS.get(name).aggregate(results, facts)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                out[name] = float(value)
    return out


# --------------------------------------------------------------------------- feedback

@dataclass(frozen=True)
class Label:
    request_id: str
    answers: tuple[str, ...] = ()
    thumbs: str | None = None  # "up" | "down"


@dataclass(frozen=True)
class FeedbackSummary:
    metrics: Mapping[str, float] = field(default_factory=dict)
    labels: int = 0
    joined: int = 0
    unknown_ids: tuple[str, ...] = ()


def read_feedback(path: Path) -> list[Label]:
    """JSONL of {request_id, answers?: [...], thumbs?: "up"|"down"}; a line with neither is an error."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedbackError(f"cannot read the feedback file {path}: {exc}") from None
    out: list[Label] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FeedbackError(f"{path}:{i}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("request_id"), str) or not row["request_id"]:
            raise FeedbackError(f"{path}:{i}: needs a request_id (the one the model returned with the answer)")
        answers = row.get("answers", [])
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise FeedbackError(f"{path}:{i}: answers must be a list of strings")
        thumbs = row.get("thumbs")
        if thumbs is not None and thumbs not in ("up", "down"):
            raise FeedbackError(f"{path}:{i}: thumbs must be \"up\" or \"down\", not {thumbs!r}")
        if not answers and thumbs is None:
            raise FeedbackError(f"{path}:{i}: a label needs answers or thumbs")
        out.append(Label(row["request_id"], tuple(answers), thumbs))
    return out


def feedback_metrics(records: Sequence[Mapping[str, Any]], labels: Sequence[Label], sanitizer: Any = None) -> FeedbackSummary:
    """em/f1 over the joined labels with gold answers (gold sanitized like the recorded answer, as in the eval),
    feedback_positive_rate over those with thumbs; labels whose request is not in the window are counted apart
    (the last label of a request id wins)."""
    by_id = {str(r["request_id"]): r for r in records}
    latest = {lb.request_id: lb for lb in labels}
    joined = [(by_id[i], lb) for i, lb in latest.items() if i in by_id]
    unknown = tuple(i for i in latest if i not in by_id)
    out: dict[str, float] = {"labelled_total": float(len(joined))}
    scored = []
    for record, lb in joined:
        if lb.answers:
            golds = tuple((sanitizer.text(g) if sanitizer is not None else g) or "" for g in lb.answers)
            scored.append(em_f1(golds, record.get("answer")) if record.get("answer") is not None else (0.0, 0.0))
    if scored:
        out["em"] = sum(e for e, _ in scored) / len(scored)
        out["f1"] = sum(f for _, f in scored) / len(scored)
    thumbs = [lb.thumbs for _, lb in joined if lb.thumbs is not None]
    if thumbs:
        out["feedback_positive_rate"] = thumbs.count("up") / len(thumbs)
    return FeedbackSummary(out, len(latest), len(joined), unknown)


# --------------------------------------------------------------------------- drift

@dataclass(frozen=True)
class Drift:
    metrics: Mapping[str, float]
    lines: tuple[str, ...]


def top_scores(eval_results: Sequence[Mapping[str, Any]]) -> list[float]:
    out = []
    for r in eval_results:
        scores = [float(x["score"]) for x in r.get("retrieved") or () if isinstance(x, Mapping)
                  and isinstance(x.get("score"), (int, float))]
        if scores:
            out.append(max(scores))
    return out


def drift(records: Sequence[Mapping[str, Any]], eval_results: Sequence[Mapping[str, Any]]) -> Drift:
    """retrieval_low_score_rate (top score under the eval's 5th percentile), and answer words / output tokens:
    percentiles of the traffic next to the eval run's, and their two-sample KS statistic (gateable in monitor.slo)."""
    metrics: dict[str, float] = {}
    lines: list[str] = []
    reference = top_scores(eval_results)
    live = [float(r["retrieval_top_score"]) for r in records if isinstance(r.get("retrieval_top_score"), (int, float))]
    if reference and live:
        p5 = percentile(reference, LOW_SCORE_PERCENTILE)
        metrics["retrieval_low_score_rate"] = sum(s < p5 for s in live) / len(live)
        lines.append(f"retrieval top score: p5 of the eval run {p5:.4g}; {sum(s < p5 for s in live)} of {len(live)} "
                     f"requests below it")
    for label, metric, get in (("answer words", "answer_words_drift_ks", lambda r: len(str(r.get("answer") or "").split())),
                               ("output tokens", "output_tokens_drift_ks", lambda r: r.get("output_tokens"))):
        a = [float(v) for v in (get(r) for r in records if not r.get("error")) if isinstance(v, (int, float))]
        b = [float(v) for v in (get(r) for r in eval_results if not r.get("error")) if isinstance(v, (int, float))]
        if a and b:
            metrics[metric] = ks_statistic(a, b)
            cells = " ".join(f"p{q} {percentile(a, q):.4g}/{percentile(b, q):.4g}" for q in (5, 50, 95))
            lines.append(f"{label} (traffic/eval): {cells}; KS {metrics[metric]:.3f} ({metric})")
    return Drift(metrics, tuple(lines))


def skip_without_traffic(metric: str) -> bool:
    """With no request in the window, a gate on a rate or a statistic of requests is skipped (not passed);
    a count is 0 and is checked."""
    return metric not in COUNTS
