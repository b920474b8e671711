"""Runs one case through a pipeline: seed, time, score. The only per-case hot path."""

from __future__ import annotations

import time
import traceback
from typing import Any

from pytest_genai.evalset import check_expect
from pytest_genai.metrics.retrieval import context_used, hit_at_k, recall_at_k, reciprocal_rank
from pytest_genai.metrics.text import em_f1
from pytest_genai.safety.guard import Guard, Redactor
from pytest_genai.seeding import apply_seed
from pytest_genai.types import Answer, Case, CaseResult, Usage


def call_pipeline(pipeline: Any, case: Case, seed: int, seed_globals: bool = True) -> tuple[Answer | None, float, str | None]:
    if seed_globals:  # not from a thread pool: the global RNGs are process-wide
        apply_seed(seed)
    started = time.perf_counter()
    try:
        out = pipeline(case)
    except Exception as exc:  # a failing case is a result (error_rate), not a crashed session
        return None, (time.perf_counter() - started) * 1000, _format_error(exc)
    latency_ms = (time.perf_counter() - started) * 1000
    if isinstance(out, str):
        return Answer(text=out), latency_ms, None
    if isinstance(out, Answer):
        problem = _check_answer(out)
        if problem:
            return None, latency_ms, problem
        return out, (out.latency_ms if out.latency_ms is not None else latency_ms), None
    return None, latency_ms, f"TypeError: the pipeline returned {type(out).__name__}; return a str or pytest_genai.Answer"


def _check_answer(answer: Answer) -> str | None:
    if not isinstance(answer.text, str):
        return f"TypeError: Answer.text must be a str, got {type(answer.text).__name__}"
    u = answer.usage
    if not (isinstance(u.input_tokens, int) and isinstance(u.output_tokens, int)):
        return "TypeError: Answer.usage token counts must be ints"
    return None


def run_case(pipeline: Any, case: Case, seed: int, pricing: tuple[float, float], repeat: int = 1,
             seed_globals: bool = True, guard: Guard | None = None, redactor: Redactor | None = None) -> CaseResult:
    """Call, guard, redact, score. Scoring sees the redacted answer and the redacted gold answers, so a
    replay of a redacted cache or cassette reproduces the metrics of the original run exactly."""
    red = redactor or Redactor(False)
    answer, latency_ms, error = call_pipeline(pipeline, case, seed, seed_globals)
    usage = answer.usage if answer is not None else Usage()
    tokens_in, tokens_out = usage.input_tokens, usage.output_tokens
    agree: bool | None = None
    failures: tuple[str, ...] = ()
    if repeat > 1 and error is None:
        assert answer is not None
        outputs = [answer.text]
        for _ in range(repeat - 1):
            again, _, err = call_pipeline(pipeline, case, seed, seed_globals)
            if again is not None:  # every call is paid for: tokens and cost count all repeats
                tokens_in += again.usage.input_tokens
                tokens_out += again.usage.output_tokens
            outputs.append(again.text if again is not None else f"<error: {(err or '').splitlines()[-1]}>")
        agree = len(set(outputs)) == 1
        if not agree:
            shown = "; ".join(f"run {i + 1}: {o!r}" for i, o in enumerate(outputs))
            failures += (f"outputs differ across {repeat} runs with the same seed ({shown})",)
    # The guard reads the redacted answer: placeholders count as flags of their type and the toxicity
    # classifier sees what a replay of the redacted cache will see, so safety metrics replay exactly.
    text = red.text(answer.text) if answer is not None else None
    verdict = guard.check(text) if guard is not None and guard.active and text is not None else None
    if verdict is not None and verdict.blocked:
        text = guard.refusal  # type: ignore[union-attr]
    golds = tuple(red.text(g) or "" for g in case.answers)
    em, f1 = em_f1(golds, text) if text is not None else (0.0, 0.0)
    if text is not None and case.expect:
        failures = tuple(check_expect(case.expect, text, f1)) + failures
    cost = tokens_in / 1000 * pricing[0] + tokens_out / 1000 * pricing[1]
    retrieval = _retrieval_scores(case, answer, None if verdict is not None and verdict.blocked else text, red)
    return CaseResult(
        id=case.id,
        question=red.text(case.question) or "",
        answer=text,
        answers=golds,
        em=em,
        f1=f1,
        latency_ms=latency_ms,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=cost,
        seed=seed,
        error=red.text(error),
        prompt=red.text(answer.prompt) if answer is not None else None,
        outputs_agree=agree,
        expect_failures=tuple(red.text(f) or "" for f in failures),
        safety_flags=verdict.flags if verdict is not None else None,
        toxicity=verdict.toxicity if verdict is not None else None,
        blocked=bool(verdict and verdict.blocked),
        critical=bool(verdict and verdict.critical),
        **retrieval,
    )


def _retrieval_scores(case: Case, answer: Answer | None, text: str | None, red: Redactor) -> dict[str, Any]:
    if answer is None:
        return {}
    retrieved = tuple(answer.metadata.get("retrieved", ()))
    out: dict[str, Any] = {"retrieved": retrieved, "cached": answer.metadata.get("cached"),
                           "system_fingerprint": answer.metadata.get("system_fingerprint")}
    if answer.contexts and text:  # not for a blocked answer: the refusal is not an answer
        out["context_used"] = context_used(text, [red.text(c) or "" for c in answer.contexts])
    if retrieved and case.gold_doc_ids:
        docs = [r["doc_id"] for r in retrieved]
        out.update(hit_at_k=hit_at_k(docs, case.gold_doc_ids), recall_at_k=recall_at_k(docs, case.gold_doc_ids),
                   reciprocal_rank=reciprocal_rank(docs, case.gold_doc_ids))
    return out


def _format_error(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(tb[-6:]).strip()
