"""The `safety:` policy applied to each answer: flags (PII types, TOXICITY), the guardrail that
replaces a blocked answer with the refusal. (Redaction is the sanitizer's job: pytest_genai/sanitize.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from pytest_genai.safety.pii import detect
from pytest_genai.safety.toxicity import get_classifier


@dataclass(frozen=True)
class Verdict:
    """The safety outcome of one answer. `toxicity` is None when no classifier is configured or when the
    score was deferred (`Guard.check(..., toxicity=False)`; `Guard.add_toxicity` fills it later)."""

    flags: tuple[str, ...]  # sorted, unique
    toxicity: float | None
    blocked: bool
    critical: bool


@dataclass
class Guard:
    """PII flags per text; toxicity per text or, much cheaper, per batch: `alt-profanity-check` has a large fixed
    cost per call and a tiny one per text (benchmarks/README.md, toxicity row), so score many answers in one call."""

    pii_types: tuple[str, ...] | None  # None: PII detection off
    classifier: Any  # a ToxicityClassifier, or None
    threshold: float
    critical: frozenset[str]
    block: frozenset[str]
    refusal: str

    @classmethod
    def from_config(cls, config: Any) -> "Guard":
        s = config.get("safety") or {}
        pii, tox = s.get("pii", {}), s.get("toxicity", {})
        classifier = None
        if tox.get("enabled"):
            try:
                classifier = get_classifier(tox.get("classifier", "profanity_check"))
            except (KeyError, ValueError) as exc:
                raise config.error("safety.toxicity.classifier", str(exc)) from None
        return cls(tuple(pii.get("types", ())) if pii.get("enabled", True) else None, classifier,
                   float(tox.get("threshold", 0.5)), frozenset(s.get("critical", ())), frozenset(s.get("block", ())),
                   str(s.get("refusal", "I can't share that.")))

    @property
    def active(self) -> bool:
        """No detector, no verdict: safety metrics are then absent rather than a reassuring 0."""
        return bool(self.pii_types) or self.classifier is not None

    @property
    def toxicity_blocks(self) -> bool:
        """True when TOXICITY is in `safety.block`: the block decision then needs each case's score before the
        case is scored (per case or per batch); otherwise toxicity can be deferred to one batch at session end."""
        return self.classifier is not None and "TOXICITY" in self.block

    def probe(self) -> None:
        """Load the classifier now (its import takes ~3 s, which is not case latency) and fail at setup, not in
        every case, when it cannot run (package missing...)."""
        if self.classifier is not None:
            self._scores(["ok"])

    def check(self, text: str, *, toxicity: bool = True) -> Verdict:
        """One answer's verdict. `toxicity=False` gives PII flags only (`Verdict.toxicity` None), to be completed
        by `add_toxicity`; the caller must not defer when `toxicity_blocks` (the verdict would not block)."""
        score = self._scores([text])[0] if toxicity and self.classifier is not None else None
        return self._verdict(self._pii(text), score)

    def check_many(self, texts: Sequence[str]) -> list[Verdict]:
        """`[check(t) for t in texts]`, with toxicity scored in one classifier call."""
        texts = _texts(texts)
        scores: Sequence[float | None] = self._scores(texts) if self.classifier is not None else [None] * len(texts)
        return [self._verdict(self._pii(t), s) for t, s in zip(texts, scores)]

    def add_toxicity(self, verdicts: Sequence[Verdict], texts: Sequence[str]) -> list[Verdict]:
        """Fill the toxicity of verdicts made with `toxicity=False` (one classifier call for all of them) and
        recompute flags, blocked and critical; verdicts that already have a score are returned unchanged.
        `texts[i]` must be the text `verdicts[i]` was computed on."""
        texts = _texts(texts)
        if len(verdicts) != len(texts):
            raise ValueError(f"add_toxicity: {len(verdicts)} verdicts but {len(texts)} texts")
        out = list(verdicts)
        todo = [i for i, v in enumerate(out) if v.toxicity is None]
        if self.classifier is None or not todo:
            return out
        for i, score in zip(todo, self._scores([texts[i] for i in todo])):
            out[i] = self._verdict(set(out[i].flags) - {"TOXICITY"}, score)
        return out

    def _pii(self, text: str) -> set[str]:
        return {f.type for f in detect(text, self.pii_types)} if self.pii_types else set()

    def _scores(self, texts: list[str]) -> list[float]:
        scores = [float(s) for s in self.classifier.scores(texts)]
        if len(scores) != len(texts):
            raise RuntimeError(f"toxicity classifier {getattr(self.classifier, 'name', self.classifier)!r} returned "
                               f"{len(scores)} scores for {len(texts)} texts")
        return scores

    def _verdict(self, flags: set[str], score: float | None) -> Verdict:
        if score is not None and score >= self.threshold:
            flags = flags | {"TOXICITY"}
        return Verdict(tuple(sorted(flags)), score, bool(flags & self.block), bool(flags & self.critical))


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a sequence of texts, not one string")
    return list(texts)
