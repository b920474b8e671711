"""Answer metrics as defined by the official SQuAD v2.0 evaluation script."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_DROP_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop articles a/an/the, collapse white space."""
    s = s.lower().translate(_DROP_PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def get_tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def f1(gold: str, pred: str) -> float:
    gold_toks, pred_toks = get_tokens(gold), get_tokens(pred)
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)  # both empty -> 1, else 0
    common = Counter(gold_toks) & Counter(pred_toks)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(metric, golds: Sequence[str], pred: str) -> float:  # type: ignore[no-untyped-def]
    """A case scores the max over its gold answers; no gold answer means the empty answer is gold."""
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(metric(g, pred) for g in golds)


def em_score(golds: Sequence[str], pred: str) -> float:
    return best_over_golds(exact, golds, pred)


def f1_score(golds: Sequence[str], pred: str) -> float:
    return best_over_golds(f1, golds, pred)


def em_f1(golds: Sequence[str], pred: str) -> tuple[float, float]:
    """Both scores, normalising the prediction and each gold answer once (the per-case hot path)."""
    pred_toks = normalize_answer(pred).split()
    gold_toks = [t for t in (normalize_answer(g).split() for g in golds) if t] or [[]]
    em = max(float(g == pred_toks) for g in gold_toks)
    return em, max(_f1_tokens(g, pred_toks) for g in gold_toks)


def _f1_tokens(gold_toks: list[str], pred_toks: list[str]) -> float:
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    num_same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)
