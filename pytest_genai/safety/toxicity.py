"""Toxicity scoring behind a small protocol, with an offline default and a registry by name.

The default, `profanity_check`, is the linear SVM shipped inside the PyPI package
`alt-profanity-check` (its model files are in the wheel: nothing is downloaded). It imports
scikit-learn and loads the model on first use, never when this module is imported, so the plugin
start-up stays light when no safety section is configured.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

from pytest_genai import optional
from pytest_genai.registries import CLASSIFIERS
from pytest_genai.registry import UnknownName

DEFAULT_THRESHOLD = 0.5


class ToxicityUnavailable(RuntimeError):
    """The backend of a classifier cannot be imported (its package is not installed)."""


@runtime_checkable
class ToxicityClassifier(Protocol):
    """`scores` returns one probability-like value in [0, 1] per text, in order; higher is more toxic."""

    name: str

    def scores(self, texts: Sequence[str]) -> list[float]: ...


class ProfanityCheckClassifier:
    """`alt-profanity-check`'s `predict_prob`: offensive/profane language in English, ~ms per text.

    It scores words more than intent: slurs and swearing score high, polite hostility low.
    """

    name = "profanity_check"
    package = "alt-profanity-check"

    def __init__(self) -> None:
        self._predict_prob: Callable[[list[str]], Sequence[float]] | None = None

    def _load(self) -> Callable[[list[str]], Sequence[float]]:
        if self._predict_prob is None:
            try:
                from profanity_check import predict_prob  # imports scikit-learn and loads the model
            except ImportError as exc:
                raise ToxicityUnavailable(
                    f"toxicity classifier {self.name!r}: {exc}. {optional.install_hint('safety')}") from exc
            self._predict_prob = predict_prob
        return self._predict_prob

    def scores(self, texts: Sequence[str]) -> list[float]:
        if isinstance(texts, str):
            raise TypeError("scores() takes a sequence of texts, not one string")
        if not texts:
            return []
        return [min(1.0, max(0.0, float(p))) for p in self._load()(list(texts))]


def flags(scores: Sequence[float], threshold: float = DEFAULT_THRESHOLD) -> list[bool]:
    """A text is flagged when its score reaches the threshold (`score >= threshold`)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return [s >= threshold for s in scores]


def register_classifier(name: str, factory: Callable[[], ToxicityClassifier] | str) -> None:
    """Make `get_classifier(name)` build classifiers with `factory` (an object or a lazy "module:attr");
    the same as `registries.classifiers.register` in a `pytest_genai_register` hook."""
    CLASSIFIERS.register(name, factory, replace=True)


def available_classifiers() -> tuple[str, ...]:
    return tuple(sorted(CLASSIFIERS.names()))


def get_classifier(name: str) -> ToxicityClassifier:
    """A new classifier by its registry name; the backend is imported on its first `scores` call."""
    try:
        factory = CLASSIFIERS.get(name)
    except UnknownName as exc:
        raise ValueError(str(exc)) from None
    return factory()  # type: ignore[operator]
