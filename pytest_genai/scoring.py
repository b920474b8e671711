"""One case through a pipeline: seed, call, time, guard, score. The only per-case hot path.

Scoring sees the sanitized answer and the gold answers sanitized alike, so a replay of a redacted cache
or cassette reproduces the metrics of the original run exactly; the CaseResult that leaves this module
is sanitized whole (metadata included), so everything downstream may persist it as it is."""

from __future__ import annotations

import math
import time
from dataclasses import fields, is_dataclass, replace
from typing import Any, Callable, Mapping

from pytest_genai.context import start_ledger, take_ledger
from pytest_genai.evalset import check_expect
from pytest_genai.metrics.retrieval import context_used, hit_at_k, recall_at_k, reciprocal_rank
from pytest_genai.metrics.text import em_f1
from pytest_genai.prompts import render_as_text
from pytest_genai.rag.corpus import sanitized_id
from pytest_genai.safety.guard import Verdict
from pytest_genai.seeding import apply_seed, release_process_seed, set_thread_seed
from pytest_genai.types import Answer, Case, CaseResult, Usage

# Answer.metadata keys the harness reads itself; the rest is kept (sanitized) in CaseResult.metadata.
_KNOWN_METADATA = ("retrieved", "cached", "system_fingerprint")


def call_pipeline(pipeline: Any, case: Case, seed: int, seed_globals: bool, pass_seed: bool,
                  sanitizer: Any) -> tuple[Answer | None, float, str | None]:
    """(answer, latency_ms, error). A failing call is this case's error (error_rate), never a crashed session."""
    set_thread_seed(seed)
    if seed_globals:  # one case at a time: the process-wide RNGs are this case's
        apply_seed(seed)
    start_ledger()
    started = time.perf_counter()
    try:
        out = pipeline(case, seed=seed) if pass_seed else pipeline(case)
    except (Exception, SystemExit) as exc:  # sys.exit() in a pipeline (a CLI's main reused) ends its case only
        take_ledger()
        said = " raised by the pipeline" if isinstance(exc, SystemExit) else ""  # not the harness's own exit
        return None, (time.perf_counter() - started) * 1000, sanitizer.exception(exc, 6) + said
    finally:
        if seed_globals:
            release_process_seed()
    latency_ms = (time.perf_counter() - started) * 1000
    answer, latency_ms, error = as_answer(out, latency_ms)
    calls = take_ledger()
    if answer is not None and calls:
        answer, latency_ms = with_llm_calls(answer, latency_ms, calls, isinstance(out, Answer) and out.latency_ms is not None)
        problem = check_usage(answer.usage, ", summed over the case's ctx.llm calls,")
        if problem:
            return None, latency_ms, problem
    return answer, latency_ms, error


def with_llm_calls(answer: Answer, latency_ms: float, calls: list[Any], latency_given: bool) -> tuple[Answer, float]:
    """What `ctx.llm` saw fills what the pipeline did not say: tokens, cache hits, the recorded latency of a
    fully replayed case, the last rendered prompt. A pipeline's own values always win."""
    gens = [g for _, g, _ in calls]
    changes: dict[str, Any] = {}
    if answer.usage.input_tokens == 0 and answer.usage.output_tokens == 0:
        changes["usage"] = Usage(sum(int(g.input_tokens) for g in gens), sum(int(g.output_tokens) for g in gens))
    meta = dict(answer.metadata)
    if "cached" not in meta:
        meta["cached"] = all(bool(getattr(g, "cached", False)) for g in gens)
        changes["metadata"] = meta
    if answer.prompt is None:
        try:
            changes["prompt"] = render_as_text(list(calls[-1][0]))
        except Exception:  # noqa: BLE001 - messages of an unexpected shape: no render, no failure
            pass
    if not latency_given and any(getattr(g, "latency_ms", None) is not None for g in gens):
        # each call costs what the provider measured (in replay: what was recorded), as for the built-ins, not
        # the cache lookup; the pipeline's own work around the calls is measured as it runs
        inside = sum(ms for _, _, ms in calls)
        spent = sum(g.latency_ms if g.latency_ms is not None else ms for (_, g, ms) in calls)
        latency_ms = max(0.0, latency_ms - inside) + spent
    return (replace(answer, **changes) if changes else answer), latency_ms


def as_answer(out: Any, latency_ms: float) -> tuple[Answer | None, float, str | None]:
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
    problem = check_usage(answer.usage)
    if problem:
        return problem
    if answer.latency_ms is not None and not (isinstance(answer.latency_ms, (int, float)) and math.isfinite(answer.latency_ms)
                                              and answer.latency_ms >= 0):
        return f"ValueError: Answer.latency_ms must be a finite number of milliseconds >= 0, got {answer.latency_ms!r}"
    if not isinstance(answer.contexts, (list, tuple)):  # a str too: its characters are no contexts
        return (f"TypeError: Answer.contexts must be a list of str (the texts given to the model), "
                f"got {type(answer.contexts).__name__}")
    bad = next((i for i, c in enumerate(answer.contexts) if not isinstance(c, str)), None)
    if bad is not None:
        return f"TypeError: Answer.contexts[{bad}] must be a str, got {type(answer.contexts[bad]).__name__}"
    if not isinstance(answer.metadata, Mapping):
        return f"TypeError: Answer.metadata must be a dict, got {type(answer.metadata).__name__}"
    return None


MAX_TOKENS = 10**12  # per case and field: a trillion tokens is no real call (and 10**30 would swamp every total)


def check_usage(u: Usage, source: str = "") -> str | None:
    """Token counts are ints in [0, MAX_TOKENS]: else the case's error, naming the field (`source`: where they came
    from when it is not the pipeline's own Answer)."""
    for field_name, metric, value in (("input_tokens", "tokens_input", u.input_tokens),
                                      ("output_tokens", "tokens_output", u.output_tokens)):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"TypeError: Answer.usage.{field_name} ({metric}){source} must be an int >= 0, got {value!r}"
        if value < 0:
            return f"ValueError: Answer.usage.{field_name} ({metric}){source} must be an int >= 0, got {value}"
        if value > MAX_TOKENS:
            return (f"ValueError: Answer.usage.{field_name} ({metric}){source} must be at most 10**12 tokens, got "
                    f"{value if value < 10**18 else f'about 10**{math.floor(math.log10(value))}'}")
    return None


def run_case(pipeline: Any, case: Case, seed: int, *, pricing: tuple[float, float], repeat: int, seed_globals: bool,
             pass_seed: bool, guard: Any, sanitizer: Any, extra_scores: Callable[..., dict[str, float]] | None = None,
             answered: tuple[Answer | None, float, str | None] | None = None) -> CaseResult:
    """Call (unless `answered`, from a batch), repeat with the same seed (the determinism check), score."""
    san = sanitizer
    answer, latency_ms, error = answered or call_pipeline(pipeline, case, seed, seed_globals, pass_seed, san)
    tokens: tuple[int, int] | None = None
    agree: bool | None = None
    failures: tuple[str, ...] = ()
    if repeat > 1 and error is None:
        assert answer is not None
        outputs = [answer.text]
        tokens_in, tokens_out = answer.usage.input_tokens, answer.usage.output_tokens
        for _ in range(repeat - 1):
            again, _, err = call_pipeline(pipeline, case, seed, seed_globals, pass_seed, san)
            if again is not None:  # every call is paid for: tokens and cost count all repeats
                tokens_in += again.usage.input_tokens
                tokens_out += again.usage.output_tokens
            outputs.append(again.text if again is not None else f"<error: {(err or '').splitlines()[-1]}>")
        tokens = (tokens_in, tokens_out)
        agree = len(set(outputs)) == 1
        if not agree:
            shown = "; ".join(f"run {i + 1}: {o!r}" for i, o in enumerate(outputs))
            failures += (f"outputs differ across {repeat} runs with the same seed ({shown})",)
    return score_answer(case, seed, (answer, latency_ms, error), pricing=pricing, guard=guard, sanitizer=san,
                        extra_scores=extra_scores, tokens=tokens, outputs_agree=agree, failures=failures)


def score_answer(case: Case, seed: int, answered: tuple[Answer | None, float, str | None], *,
                 pricing: tuple[float, float], guard: Any, sanitizer: Any,
                 extra_scores: Callable[..., dict[str, float]] | None = None, tokens: tuple[int, int] | None = None,
                 outputs_agree: bool | None = None, failures: tuple[str, ...] = ()) -> CaseResult:
    """One answer (or its error) guarded, scored and sanitized: the case's result. `tokens`: the calls' total when
    there were more than this answer's (the determinism check's repeats)."""
    san = sanitizer
    answer, latency_ms, error = answered
    answered_at, scoring_started = time.time() * 1000, time.perf_counter()
    usage = answer.usage if answer is not None else Usage()
    tokens_in, tokens_out = tokens if tokens is not None else (usage.input_tokens, usage.output_tokens)
    agree = outputs_agree
    # The guard reads the sanitized answer: placeholders count as flags of their type and the toxicity
    # classifier sees what a replay of the redacted cache will see, so safety metrics replay exactly.
    text = san.text(answer.text) if answer is not None else None
    verdict = None
    if guard is not None and guard.active and text is not None:
        verdict = guard.check(text, toxicity=guard.toxicity_blocks)  # else scored in one batch at session end
    if verdict is not None and verdict.blocked:
        if verdict.toxicity is None and guard.classifier is not None:  # score what was said, not the refusal
            verdict = guard.add_toxicity([verdict], [text])[0]
        text = guard.refusal
    golds = tuple(san.text(g) or "" for g in case.answers)
    em, f1 = em_f1(golds, text) if text is not None else (0.0, 0.0)
    if text is not None and case.expect:
        failures = tuple(check_expect(case.expect, text, f1)) + failures
    cost = tokens_in / 1000 * pricing[0] + tokens_out / 1000 * pricing[1]
    retrieval = _retrieval_scores(case, answer, None if verdict is not None and verdict.blocked else text, san)
    result = CaseResult(
        id=case.id, question=case.question, answer=text, answers=golds, em=em, f1=f1, latency_ms=latency_ms,
        input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost, seed=seed, error=error,
        prompt=answer.prompt if answer is not None else None, outputs_agree=agree, expect_failures=failures,
        safety_flags=verdict.flags if verdict is not None else None,
        toxicity=verdict.toxicity if verdict is not None else None,
        blocked=bool(verdict and verdict.blocked), critical=bool(verdict and verdict.critical),
        metadata={k: v for k, v in (answer.metadata if answer is not None else {}).items() if k not in _KNOWN_METADATA},
        started_ms=answered_at - latency_ms if math.isfinite(latency_ms) else answered_at,
        timings=_timings(answer),
        **retrieval,
    )
    if extra_scores is not None:
        try:
            scores = extra_scores(case=case, answer=answer, result=result)
        except Exception as exc:  # a user scorer's bug is this case's error, shown sanitized
            # an errored case counts as a wrong answer, whatever raised
            result = replace(result, error=f"a per-case scorer failed: {san.exception(exc, 6)}", em=0.0, f1=0.0)
        else:
            if scores:
                result = replace(result, scores={**result.scores, **scores})
    try:
        return sanitize_result(result, san, score_ms=(time.perf_counter() - scoring_started) * 1000)
    except RecursionError:  # only looked into when it happens: the walk costs nothing on the hot path
        problem = metadata_problem(answer.metadata if answer is not None else {})
        if problem is None:
            raise
    # the pipeline's Answer is invalid, like one with a negative token count: this case's error, naming the field
    result = replace(result, error=problem, em=0.0, f1=0.0, metadata={}, retrieved=())
    return sanitize_result(result, san, score_ms=(time.perf_counter() - scoring_started) * 1000)


def metadata_problem(metadata: Any) -> str | None:
    """Why `Answer.metadata` has no JSON form, as the case's error: a value that contains itself (the first cycle
    met, by its path), or nesting deeper than the record's converters recurse; None when neither (the recursion was
    elsewhere). One pass, each container once (what is on the current path is kept, for the cycle's path)."""
    enter, leave = 0, 1
    on_path: dict[int, str] = {}
    deepest = 0
    stack: list[tuple[int, Any, str]] = [(enter, metadata, "metadata")]
    while stack:
        op, obj, path = stack.pop()
        if op == leave:
            del on_path[id(obj)]
            continue
        if isinstance(obj, Mapping):
            children = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
        elif isinstance(obj, (list, tuple)):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
        elif is_dataclass(obj) and not isinstance(obj, type):
            children = [(f"{path}.{f.name}", getattr(obj, f.name)) for f in fields(obj)]
        else:
            continue
        if id(obj) in on_path:
            return (f"ValueError: Answer.metadata contains itself: {_short(path)} is {_short(on_path[id(obj)])} "
                    "(a value holding itself has no JSON form: put a copy, or an id, in metadata)")
        on_path[id(obj)] = path
        deepest = max(deepest, len(on_path))
        stack.append((leave, obj, path))
        stack.extend((enter, v, p) for p, v in reversed(children))
    if deepest >= MAX_METADATA_DEPTH:
        return (f"ValueError: Answer.metadata is nested {deepest} levels deep: too deep for the run record (keep it "
                f"under {MAX_METADATA_DEPTH} levels)")
    return None


MAX_METADATA_DEPTH = 100  # the advice given once the record's converters ran out of recursion on a deep metadata


def _short(path: str) -> str:
    return path if len(path) <= 200 else f"{path[:90]}...{path[-90:]}"


def _timings(answer: Answer | None) -> dict[str, float]:
    """The pipeline's stage timings that are finite numbers >= 0 (a custom pipeline may put anything there)."""
    if answer is None or not isinstance(answer.timings, Mapping):
        return {}
    return {str(k): float(v) for k, v in answer.timings.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0}


def sanitize_result(result: CaseResult, sanitizer: Any, score_ms: float | None = None) -> CaseResult:
    """The boundary for case data: every string anywhere in the result (ids excepted: they name items); the copy
    it makes also takes the scoring time (`timings.score_ms`)."""
    data = sanitizer.obj(result.to_dict())
    data["id"] = result.id
    if score_ms is not None:
        data["timings"] = {**data.get("timings", {}), "score_ms": score_ms}
    return CaseResult.from_dict(data)


def deferred_toxicity(results: list[CaseResult], guard_for: Callable[[], Any]) -> list[CaseResult]:
    """Toxicity not needed for a block decision, scored at the session's end in one batch (0.05 ms/text, not 11 ms);
    `guard_for()` gives the guard (built only when a result needs it). A case of sampled repeats: its first answer."""
    todo = [i for i, r in enumerate(results) if r.safety_flags is not None and r.toxicity is None and r.answer is not None]
    if not todo:
        return results
    guard = guard_for()
    if guard.classifier is None:
        return results
    verdicts = [Verdict(tuple(results[i].safety_flags or ()), None, results[i].blocked, results[i].critical) for i in todo]
    scored = guard.add_toxicity(verdicts, [results[i].answer or "" for i in todo])
    out = list(results)
    for i, v in zip(todo, scored):
        out[i] = replace(out[i], safety_flags=v.flags, toxicity=v.toxicity, critical=v.critical)
    return out


def no_result(case: Case, seed: int, sanitizer: Any, error: str | None = None) -> CaseResult:
    return sanitize_result(CaseResult(
        case.id, case.question, None, tuple(case.answers), 0.0, 0.0, float("nan"), 0, 0, 0.0, seed,
        error=error or "no result: the item was selected but produced none (skipped, or its worker crashed)"), sanitizer)


def _retrieval_scores(case: Case, answer: Answer | None, text: str | None, san: Any) -> dict[str, Any]:
    if answer is None:
        return {}
    retrieved = tuple(answer.metadata.get("retrieved", ()) or ())
    out: dict[str, Any] = {"retrieved": retrieved, "cached": answer.metadata.get("cached"),
                           "system_fingerprint": answer.metadata.get("system_fingerprint")}
    if answer.contexts and text:  # not for a blocked answer: the refusal is not an answer
        out["context_used"] = context_used(text, [san.text(c) or "" for c in answer.contexts])
    if retrieved and case.gold_doc_ids:
        try:  # both sides as the corpus ids are indexed with safety.redact (builtin:rag's are already: idempotent)
            docs = [sanitized_id(str(r["doc_id"]), san) for r in retrieved]
        except (KeyError, TypeError):
            return out
        gold = [sanitized_id(g, san) for g in case.gold_doc_ids]
        out.update(hit_at_k=hit_at_k(docs, gold), recall_at_k=recall_at_k(docs, gold), reciprocal_rank=reciprocal_rank(docs, gold))
    return out
