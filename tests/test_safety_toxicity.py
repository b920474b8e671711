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
    from pytest_genai.registries import CLASSIFIERS

    monkeypatch.setattr(CLASSIFIERS, "_entries", dict(CLASSIFIERS._entries))  # registrations end with the test
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
    with pytest.raises(ToxicityUnavailable, match=r"pip install 'pytest-genai\[safety\]'"):
        clf.scores(["hello"])
    assert clf.scores([]) == []  # nothing to score needs no model


# --- Guard: toxicity per text, per batch, or deferred to one batch at session end -------------------------

from pathlib import Path  # noqa: E402

from pytest_genai.safety.guard import Guard, Verdict  # noqa: E402

# Abusive, neutral, PII-only, and abusive with PII: every branch of flags/blocked/critical.
MIXED = [
    ABUSIVE[0],
    NEUTRAL[0],
    "Mail me at jane.doe@example.com about the report.",
    "Shut up, you stupid bitch, my number is +1 415 555 0134.",
    NEUTRAL[2],
    ABUSIVE[3],
    "",
]


def _guard(block: tuple[str, ...] = (), critical: tuple[str, ...] = ("TOXICITY", "EMAIL"), toxicity: bool = True) -> Guard:
    return Guard(pii_types=("EMAIL", "PHONE", "SECRET"), classifier=get_classifier("profanity_check") if toxicity else None,
                 threshold=DEFAULT_THRESHOLD, critical=frozenset(critical), block=frozenset(block), refusal="no")


@needs_package
@pytest.mark.parametrize("block", [(), ("TOXICITY",), ("PHONE",), ("TOXICITY", "EMAIL")])
def test_check_many_equals_check_per_text(block: tuple[str, ...]) -> None:
    guard = _guard(block)
    one_by_one = [guard.check(t) for t in MIXED]
    assert guard.check_many(MIXED) == one_by_one
    assert guard.check_many(tuple(MIXED)) == one_by_one  # any sequence
    assert guard.check_many([]) == []
    # the sample really exercises the rules: toxic and clean, PII and none, blocked and not (per the block list)
    assert {"TOXICITY"} <= set(one_by_one[0].flags) and one_by_one[1] == Verdict((), one_by_one[1].toxicity, False, False)
    assert one_by_one[3].flags == ("PHONE", "TOXICITY") and one_by_one[2].flags == ("EMAIL",)
    assert all(v.toxicity is not None and 0.0 <= v.toxicity <= 1.0 for v in one_by_one)
    assert [v.blocked for v in one_by_one] == [bool(set(v.flags) & set(block)) for v in one_by_one]
    assert any(v.blocked for v in one_by_one) == bool(block)


@needs_package
@pytest.mark.parametrize("block", [(), ("TOXICITY",), ("EMAIL",)])
def test_add_toxicity_equals_the_full_check(block: tuple[str, ...]) -> None:
    guard = _guard(block)
    deferred = [guard.check(t, toxicity=False) for t in MIXED]
    assert all(v.toxicity is None and "TOXICITY" not in v.flags for v in deferred)
    assert [v.flags for v in deferred] == [tuple(f for f in v.flags if f != "TOXICITY") for v in guard.check_many(MIXED)]
    assert guard.add_toxicity(deferred, MIXED) == [guard.check(t) for t in MIXED]
    # verdicts already scored are kept as they are; only the missing ones are filled
    full = guard.check_many(MIXED)
    half = [full[i] if i % 2 else deferred[i] for i in range(len(MIXED))]
    assert guard.add_toxicity(half, MIXED) == full
    assert guard.add_toxicity([], []) == []
    with pytest.raises(ValueError, match="2 verdicts but 1 texts"):
        guard.add_toxicity(deferred[:2], MIXED[:1])


@needs_package
def test_deferring_changes_the_verdict_only_until_toxicity_is_added() -> None:
    guard = _guard(block=("TOXICITY",))
    assert guard.toxicity_blocks  # the harness must not defer here: a deferred verdict would not block
    now, later = guard.check(ABUSIVE[0]), guard.check(ABUSIVE[0], toxicity=False)
    assert now.blocked and now.critical and not later.blocked and not later.critical
    assert guard.add_toxicity([later], [ABUSIVE[0]]) == [now]


def test_toxicity_blocks_and_pii_only_guard() -> None:
    assert not _guard(toxicity=False, block=("TOXICITY",)).toxicity_blocks  # no classifier, nothing to wait for
    pii_only = _guard(toxicity=False, block=("EMAIL",))
    texts = [MIXED[2], NEUTRAL[0]]
    verdicts = pii_only.check_many(texts)
    assert verdicts == [pii_only.check(t) for t in texts] == [Verdict(("EMAIL",), None, True, True), Verdict((), None, False, False)]
    assert pii_only.add_toxicity(verdicts, texts) == verdicts  # no classifier: unchanged
    pii_only.probe()  # nothing to load
    with pytest.raises(TypeError, match="sequence of texts"):
        pii_only.check_many("one string")  # type: ignore[arg-type]


class _Counting:
    """A real classifier wrapped to count calls: batching is about how many times the model runs."""

    name = "counting"

    def __init__(self) -> None:
        self.inner, self.calls = ProfanityCheckClassifier(), []

    def scores(self, texts):  # type: ignore[no-untyped-def]
        self.calls.append(len(texts))
        return self.inner.scores(texts)


@needs_package
def test_one_classifier_call_per_batch() -> None:
    clf = _Counting()
    guard = Guard(("EMAIL",), clf, DEFAULT_THRESHOLD, frozenset(), frozenset(), "no")
    guard.probe()
    assert clf.calls == [1]
    guard.check_many(MIXED)
    deferred = [guard.check(t, toxicity=False) for t in MIXED]
    assert clf.calls == [1, len(MIXED)]  # deferred checks do not touch the classifier
    guard.add_toxicity(deferred, MIXED)
    assert clf.calls == [1, len(MIXED), len(MIXED)]


def test_a_classifier_returning_the_wrong_count_is_an_error() -> None:
    class Short:
        name = "short"

        def scores(self, texts):  # type: ignore[no-untyped-def]
            return [0.0]

    guard = Guard(None, Short(), 0.5, frozenset(), frozenset(), "no")
    assert guard.check_many(["a"]) == [Verdict((), 0.0, False, False)]
    with pytest.raises(RuntimeError, match="'short' returned 1 scores for 2 texts"):
        guard.check_many(["a", "b"])


@needs_package
def test_guard_from_config_blocks_on_toxicity(tmp_path: Path) -> None:
    from pytest_genai.config.model import load_config

    (tmp_path / "genai.yaml").write_text(
        "version: 1\npipeline: x:y\neval:\n  set: e.jsonl\n"
        "safety:\n  toxicity:\n    enabled: true\n  block: [TOXICITY]\n")
    guard = Guard.from_config(load_config(tmp_path / "genai.yaml"))
    assert guard.toxicity_blocks and guard.classifier.name == "profanity_check"
    guard.probe()
    assert guard.check_many([ABUSIVE[1], NEUTRAL[1]]) == [guard.check(ABUSIVE[1]), guard.check(NEUTRAL[1])]
    assert guard.check(ABUSIVE[1]).blocked and not guard.check(NEUTRAL[1]).blocked

    (tmp_path / "genai.yaml").write_text("version: 1\npipeline: x:y\neval:\n  set: e.jsonl\n")
    assert not Guard.from_config(load_config(tmp_path / "genai.yaml")).toxicity_blocks  # toxicity off by default
