"""Toxicity scoring: the offline profanity-check classifier orders abusive above neutral text, the
threshold rule, the registry, and the lazy import (importing the module must not load scikit-learn)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from pytest_genai.safety import toxicity
from pytest_genai.safety.toxicity import (
    DEFAULT_THRESHOLD,
    ProfanityCheckClassifier,
    ToxicityClassifier,
    ToxicityUnavailable,
    available_classifiers,
    flags,
    get_classifier,
    register_classifier,
)

ABUSIVE = [
    "You are a fucking idiot and everyone hates you.",
    "Shut up, you stupid bitch.",
    "This is bullshit, you worthless piece of shit.",
    "Go to hell, you dumb asshole.",
]
NEUTRAL = [
    "The capital of France is Paris.",
    "Thank you for your help with the report.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Please summarise the attached document in three bullet points.",
]

needs_package = pytest.mark.skipif(
    importlib.util.find_spec("profanity_check") is None,
    reason="alt-profanity-check is not installed",
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_importing_does_not_load_sklearn() -> None:
    proc = _run("""
        import sys
        import pytest_genai.safety, pytest_genai.safety.toxicity as tox
        clf = tox.get_classifier("profanity_check")
        heavy = [m for m in ("sklearn", "profanity_check", "joblib", "scipy", "numpy") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@needs_package
def test_scoring_loads_the_model_lazily() -> None:
    proc = _run("""
        import sys
        from pytest_genai.safety.toxicity import get_classifier
        s = get_classifier("profanity_check").scores(["hello there"])
        assert "sklearn" in sys.modules and 0.0 <= s[0] <= 1.0
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr


@needs_package
def test_abusive_scores_above_neutral() -> None:
    clf = get_classifier("profanity_check")
    assert isinstance(clf, ToxicityClassifier) and clf.name == "profanity_check"
    abusive, neutral = clf.scores(ABUSIVE), clf.scores(NEUTRAL)
    assert len(abusive) == len(ABUSIVE) and len(neutral) == len(NEUTRAL)
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in abusive + neutral)
    assert min(abusive) > max(neutral)
    assert flags(abusive) == [True] * len(ABUSIVE)
    assert flags(neutral) == [False] * len(NEUTRAL)
    assert clf.scores(NEUTRAL) == neutral  # deterministic
    assert clf.scores([]) == []


@needs_package
def test_scores_are_per_text_and_in_order() -> None:
    clf = ProfanityCheckClassifier()
    mixed = [NEUTRAL[0], ABUSIVE[0], NEUTRAL[1]]
    s = clf.scores(mixed)
    assert s[1] > s[0] and s[1] > s[2]
    assert s == [clf.scores([t])[0] for t in mixed]
    with pytest.raises(TypeError):
        clf.scores("one string")  # type: ignore[arg-type]


def test_threshold_rule() -> None:
    scores = [0.0, 0.2, 0.5, 0.51, 1.0]
    assert DEFAULT_THRESHOLD == 0.5
    assert flags(scores) == [False, False, True, True, True]  # score >= threshold
    assert flags(scores, 0.9) == [False, False, False, False, True]
    assert flags(scores, 0.0) == [True] * 5
    assert flags([], 0.3) == []
    with pytest.raises(ValueError, match="threshold"):
        flags(scores, 1.5)


def test_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toxicity, "_REGISTRY", dict(toxicity._REGISTRY))  # registrations end with the test
    assert "profanity_check" in available_classifiers()
    with pytest.raises(ValueError, match="unknown toxicity classifier 'perspective'.*profanity_check"):
        get_classifier("perspective")

    class Constant:
        name = "constant_test"

        def scores(self, texts):  # type: ignore[no-untyped-def]
            return [0.25 for _ in texts]

    register_classifier("constant_test", Constant)
    clf = get_classifier("constant_test")
    assert isinstance(clf, ToxicityClassifier) and clf.scores(["a", "b"]) == [0.25, 0.25]


def test_missing_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "profanity_check", None)  # makes `import profanity_check` fail
    clf = ProfanityCheckClassifier()
    with pytest.raises(ToxicityUnavailable, match="alt-profanity-check"):
        clf.scores(["hello"])
    assert clf.scores([]) == []  # nothing to score needs no model
