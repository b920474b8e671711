"""The `safety:` policy applied to each answer: flags (PII types, TOXICITY), the guardrail that
replaces a blocked answer with the refusal, and the redactor used on everything persisted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functools import lru_cache

from pytest_genai.safety.pii import detect, redact, redact_obj

# Retrieved chunks and prompts repeat across cases: redact each distinct text once.
_redact_cached = lru_cache(maxsize=8192)(redact)


@dataclass(frozen=True)
class Verdict:
    flags: tuple[str, ...]  # sorted, unique
    toxicity: float | None
    blocked: bool
    critical: bool


@dataclass
class Guard:
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
            from pytest_genai.safety.toxicity import get_classifier

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

    def probe(self) -> None:
        """Fail at setup, not in every case, when the classifier cannot run (package missing...)."""
        if self.classifier is not None:
            self.classifier.scores(["ok"])

    def check(self, text: str) -> Verdict:
        flags = {f.type for f in detect(text, self.pii_types)} if self.pii_types else set()
        score = None
        if self.classifier is not None:
            score = float(self.classifier.scores([text])[0])
            if score >= self.threshold:
                flags.add("TOXICITY")
        return Verdict(tuple(sorted(flags)), score, bool(flags & self.block), bool(flags & self.critical))


@dataclass(frozen=True)
class Redactor:
    """Typed placeholders with a stable short hash (`<EMAIL:1a2b3c>`), so equal values stay comparable
    and a detector run on redacted text counts the same flags. Identity when `safety.redact` is false."""

    enabled: bool = True

    def text(self, value: str | None) -> str | None:
        return _redact_cached(value) if self.enabled and value else value

    def obj(self, value: Any) -> Any:
        return redact_obj(value) if self.enabled else value

    @classmethod
    def from_config(cls, config: Any) -> "Redactor":
        return cls(bool(config.get("safety.redact", True)))
