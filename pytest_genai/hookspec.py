"""Hooks a conftest or plugin implements to extend pytest-genai (added with `pytest_addhooks`).
They are called only in a session with `--genai-config`. The built-in per-case scores and the end-of-session
metric table are implementations of the same hooks (`pytest_genai.builtin_hooks`, registered before any conftest
and `tryfirst`: a conftest's implementation runs after them, a `tryfirst` one before); the built-in metrics, pipelines, providers and classifiers sit in the same
registries `pytest_genai_register` adds to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_genai.registries import Registries
    from pytest_genai.runlog import RunRecord
    from pytest_genai.types import Answer, Case, CaseResult


def pytest_genai_register(registries: "Registries") -> None:
    """Register metrics, pipelines, providers, toxicity classifiers or packaged models, before the config
    is validated (so a gate may name a metric registered here). Example::

        from pytest_genai import register_metric

        def pytest_genai_register(registries):
            registries.pipelines.register("mine", "my_pkg.pipeline:factory")  # pipeline: mine
            registries.providers.register("my_api", "my_pkg.llm:MyLLM.from_config")  # llm.provider: my_api

        @register_metric("answer_words", doc="words in the answer", unit="words")
        def answer_words(case, answer, result):
            return len(answer.text.split()) if answer else None
    """


def pytest_genai_case_scores(case: "Case", answer: "Answer | None", result: "CaseResult") -> "dict[str, float] | None":
    """Extra per-case scores, merged into `CaseResult.scores` (later implementations win on a clash).
    A score named like a registered per-case metric is aggregated by it; others are kept per case. Example::

        def pytest_genai_case_scores(case, answer, result):
            return {"mentions_source": float("source" in (answer.text if answer else ""))}
    """


def pytest_genai_run_finished(record: "RunRecord", run_dir: Any) -> None:
    """The finished run record (sanitized, written to `run_dir`), after gates and tracking."""


@pytest.hookspec(firstresult=False)
def pytest_genai_terminal_lines(record: "RunRecord") -> "list[str] | None":
    """Lines (`str`, or `pytest_genai.report.terminal.Line` for a style) for the end-of-session pytest-genai section;
    the built-in implementation returns the metric table, so yours follow it. Every line is sanitized. Example::

        def pytest_genai_terminal_lines(record):
            return [f"slowest case: {max(record.results, key=lambda r: r.latency_ms).id}"]
    """
