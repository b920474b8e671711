"""pytest collection nodes: an eval set file and one item per case."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterator

import pytest

from pytest_genai.sanitize import headline
from pytest_genai.scoring import no_result
from pytest_genai.state import STATE_KEY
from pytest_genai.types import Case, CaseResult

# Eval-set tags become markers only when pytest can take them as such and they change nothing.
_MARKER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED_MARKERS = {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings"}


def marker_tags(tags: tuple[str, ...]) -> list[str]:
    return [t for t in tags if _MARKER_NAME.match(t) and t not in _RESERVED_MARKERS]


class CaseFailure(Exception):
    def __init__(self, result: CaseResult) -> None:
        self.result = result
        super().__init__(result.error or "; ".join(result.expect_failures))


class PipelineBuildError(Exception):
    """The pipeline could not be built on this xdist worker (shown once per item there)."""


class EvalSetFile(pytest.File):
    def collect(self) -> Iterator["CaseItem"]:
        state = self.config.stash[STATE_KEY]
        for case in state.eval_set.cases:
            yield CaseItem.from_parent(self, name=case.id, case=case)


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.result: CaseResult | None = None
        for tag in marker_tags(case.tags):  # `-m` selection by eval-set tag
            self.add_marker(tag)

    def runtest(self) -> None:
        state = self.config.stash[STATE_KEY]
        if state.build_error is not None:  # an xdist worker: the controller learns it from this case's result

            self.result = no_result(self.case, state.seed_for(self.case), state.sanitizer, state.build_error)
            # this worker stops after this one case (xdist reads shouldstop after each item and hands it to the
            # controller, which stops the others): one failure per worker, not one per case
            self.session.shouldstop = "pytest-genai: the pipeline did not build (the failed case says why)"
            raise PipelineBuildError(state.build_error)
        result = state.run(self.case)
        self.result = result
        self.user_properties.extend([
            ("em", result.em), ("f1", round(result.f1, 6)), ("latency_ms", round(result.latency_ms, 3)),
            ("input_tokens", result.input_tokens), ("output_tokens", result.output_tokens),
            ("cost_usd", result.cost_usd), ("seed", result.seed),
        ])
        if result.pass_rate is not None:  # sampled repeats
            self.user_properties.append(("pass_rate", round(result.pass_rate, 6)))
        if result.error is not None or result.expect_failures:
            raise CaseFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailure):
            detail = self.config.stash[STATE_KEY].error_details.get(self.case.id)
            return format_case_failure(self.case, excinfo.value.result, detail)
        if isinstance(excinfo.value, PipelineBuildError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, self.case.line - 1, f"case {self.case.id}"


def format_case_failure(case: Case, r: CaseResult, detail: str | None = None) -> str:
    """`detail`: the sanitized trace the recorded one-line error heads (shown here, in the terminal, not recorded)."""
    lines = [headline(r.error) if r.error else "; ".join(r.expect_failures), f"case {case.id} (line {case.line}, seed {r.seed})"]
    if r.error is not None:
        if detail:
            lines.append("scoring raised:" if r.error.startswith("a per-case scorer failed") else "pipeline raised:")
            lines += ["    " + ln for ln in detail.splitlines()]
    for f in r.expect_failures:
        lines.append(f"FAILED: {f}")
    lines += [
        f"question: {r.question}",  # the result's copies: redacted, as everything shown or persisted
        f"answer:   {r.answer!r}",
        f"gold:     {list(r.answers)!r}",
        f"em={r.em:.3g} f1={r.f1:.3f} latency={r.latency_ms:.1f}ms tokens={r.input_tokens}+{r.output_tokens}"
        + (" (means over the repeats; tokens: their sum)" if r.pass_rate is not None else ""),
    ]
    if r.pass_rate is not None:  # sampled repeats: what each said (the answer above is the first's)
        said = Counter(str(a) for a in r.repeats.get("answers", ()))
        lines.append(f"repeats:  {r.repeats.get('passed')} of {r.repeats.get('n')} passed; answers: "
                     + ", ".join(f"{a!r} x{k}" for a, k in said.most_common(5)) + (" ..." if len(said) > 5 else ""))
    if r.safety_flags:
        lines.append(f"safety:   flags {', '.join(r.safety_flags)}" + (" (blocked: answer replaced by the refusal)" if r.blocked else ""))
    if r.prompt:
        lines.append("rendered prompt:")
        lines += ["    " + ln for ln in r.prompt.splitlines()]
    return "\n".join(lines)

