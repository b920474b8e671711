"""Repeats as statistics (`--genai-repeat N` / `eval.repeat` with sampling, `llm.temperature > 0`).

Repeat r of a case runs with `repeat_seed(case seed, r)`: repeat 0 keeps the case's own seed (one repeat is the
single run it always was), the others are derived from (case seed, r) alone, so they depend on neither the order,
the subset (-k) nor the worker (-n). Each repeat is scored as a case of its own (`scoring.score_answer`); the case's
result is then what the repeats say together:

* its verdict follows `eval.pass_policy`: `all` (every repeat passes; the default), `majority` (more than half),
  or `{k_of_n: [k, n]}` (at least k of the n repeats; n must be the number of repeats);
* `pass_rate` (the share of repeats whose verdict passed) and `flip` (their verdicts disagree);
* each score (em, f1, the registered per-case scores, retrieval) is the mean over the repeats, its sample standard
  deviation kept in `repeats["spread"]`: a case's mean is what the bootstrap resamples, so a run's CIs treat the
  repeats of one case as a cluster (cases are resampled, not repeats); latency is one call's (see `combine`);
* tokens and cost are the sum (every call is paid for); safety flags the union; blocked / critical if any repeat.

With temperature 0 the repeats are the determinism check (`scoring.run_case`: same seed, the outputs must agree)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import Any, Callable, Sequence

from pytest_genai.compare.pairing import case_passed
from pytest_genai.policy import Policy, PolicyError, parse_policy
from pytest_genai.sanitize import one_line
from pytest_genai.scoring import call_pipeline, score_answer
from pytest_genai.types import Case, CaseResult

REPEAT_METRICS = ("pass_rate", "flip_rate", "pass_at_k", "pass_all_k")  # run metrics of sampled repeats only


def sampling(config: Any) -> bool:
    """Repeats are statistics with sampling (llm.temperature > 0), else the determinism check."""
    return float(config.get("llm.temperature") or 0) > 0


def session_policy(config: Any, repeat: int) -> Policy:
    """eval.pass_policy for a session of `repeat` repeats (its k_of_n counts them), and no gate on a metric the session
    cannot compute: checked before any call, a ConfigError naming the key."""
    try:
        policy = parse_policy(config.get("eval.pass_policy"), repeat)
    except PolicyError as exc:
        raise config.error("eval.pass_policy", str(exc)) from None
    gated = [m for m in REPEAT_METRICS if m in (config.get("gates") or {})]
    if gated and not (repeat > 1 and sampling(config)):
        why = "runs each case once" if repeat == 1 else \
            f"samples nothing (llm.temperature 0: its {repeat} repeats are the determinism check)"
        raise config.error(f"gates.{gated[0]}", f"{gated[0]} is measured over sampled repeats, and this session {why}: "
                                                "run with --genai-repeat N (N > 1, or eval.repeat) and llm.temperature > 0, "
                                                "or drop the gate")
    return policy


def header(config: Any, repeat: int, policy: Policy) -> str | None:
    """The session header's line on repeats (None: one run a case)."""
    if repeat == 1:
        return None
    if sampling(config):
        return (f"genai: repeats: {repeat} a case, each with its own seed (llm.temperature "
                f"{float(config.get('llm.temperature')):g}); a case passes by eval.pass_policy {policy}")
    ignored = "; eval.pass_policy does not apply" if config.get("eval.pass_policy") is not None else ""
    return (f"genai: repeats: {repeat} a case with the case's seed (llm.temperature 0: the determinism check, outputs "
            f"must agree){ignored}")


def repeat_seed(case_seed: int, r: int) -> int:
    """The seed of repeat r (0-based) of a case: the case's own for r = 0, else f(case seed, r)."""
    if r == 0:
        return case_seed
    digest = hashlib.sha256(f"{case_seed}:repeat:{r}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def mean_and_spread(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation) of the finite values; spread 0 for one value, (None, None) for none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def run_sampled(pipeline: Any, case: Case, seed: int, *, repeat: int, policy: Policy, pricing: tuple[float, float],
                seed_globals: bool, pass_seed: bool, guard: Any, sanitizer: Any,
                extra_scores: Callable[..., dict[str, float]] | None = None,
                answered: tuple[Any, float, str | None] | None = None) -> CaseResult:
    """The case's `repeat` seeded repeats, each scored, combined into one result (`answered`: repeat 0's answer,
    from a batch)."""
    results = []
    for r in range(repeat):
        s = repeat_seed(seed, r)
        if not (r == 0 and answered is not None):
            answered = call_pipeline(pipeline, case, s, seed_globals, pass_seed, sanitizer)
        assert answered is not None
        results.append(score_answer(case, s, answered, pricing=pricing, guard=guard, sanitizer=sanitizer,
                                    extra_scores=extra_scores))
    return combine(results, policy)


def _mean(values: Sequence[float | None]) -> float | None:
    return mean_and_spread(values)[0]


# Errors of the harness, not outcomes of the model: a repeat with one puts its case in error (a replay's miss).
NOT_OUTCOMES = ("pytest_genai.llm.cache.CacheMiss: ",)


def combine(results: Sequence[CaseResult], policy: Policy) -> CaseResult:
    """One case's result from its repeats' (repeat 0 first; all sanitized already, as this result then is). Its
    latency is one call's, the first that answered (the percentiles stay over calls, comparable with a run without
    repeats; every repeat's is in `repeats.latencies_ms`); the errors count in error_rate as a share of calls."""
    first, n = results[0], len(results)
    verdicts = [case_passed(r) for r in results]  # each repeat's, as its item's would be
    k = sum(verdicts)
    spread: dict[str, float] = {}

    def stat(name: str, values: Sequence[float | None]) -> float | None:
        m, sd = mean_and_spread(values)
        if sd is not None:
            spread[name] = sd
        return m

    em, f1 = stat("em", [r.em for r in results]), stat("f1", [r.f1 for r in results])
    latencies = [r.latency_ms for r in results if r.error is None]
    stat("latency_ms", latencies)
    scores = {}
    for name in dict.fromkeys(s for r in results for s in r.scores):
        value = stat(name, [r.scores.get(name) for r in results])
        if value is not None:
            scores[name] = value
    flags = [r.safety_flags for r in results if r.safety_flags is not None]
    toxicity = [r.toxicity for r in results if r.toxicity is not None]
    error, failures = None, ()
    harness = next((r.error for r in results if r.error and any(e in r.error for e in NOT_OUTCOMES)), None)
    if harness is not None:  # not what the model did: the case is in error, whatever the other repeats did
        error = harness
    elif not policy.passes(verdicts):
        failing = next(i for i, v in enumerate(verdicts) if not v)
        why = one_line(results[failing].error or "") or "; ".join(results[failing].expect_failures)
        if all(r.error is not None for r in results):
            error = first.error
        else:
            failures = (f"{k} of {n} repeats passed; eval.pass_policy {policy} needs {policy.needed(n)} (repeat "
                        f"{failing + 1}, seed {results[failing].seed}: {why})",)
    errors = [one_line(r.error) for r in results if r.error is not None]
    detail = {"n": n, "passed": k, "policy": str(policy), "verdicts": verdicts, "seeds": [r.seed for r in results],
              "answers": [r.answer for r in results], "latencies_ms": latencies, "errors": len(errors),
              "first_error": errors[0] if errors else None, "spread": spread}
    return replace(
        first, em=em if em is not None else 0.0, f1=f1 if f1 is not None else 0.0,
        latency_ms=latencies[0] if latencies else math.nan,
        input_tokens=sum(r.input_tokens for r in results), output_tokens=sum(r.output_tokens for r in results),
        cost_usd=sum(r.cost_usd for r in results), error=error, expect_failures=failures,
        hit_at_k=_mean([r.hit_at_k for r in results]), recall_at_k=_mean([r.recall_at_k for r in results]),
        reciprocal_rank=_mean([r.reciprocal_rank for r in results]),
        safety_flags=tuple(dict.fromkeys(f for fs in flags for f in fs)) if flags else None,
        toxicity=max(toxicity) if toxicity else None, blocked=any(r.blocked for r in results),
        critical=any(r.critical for r in results), scores=scores, pass_rate=k / n, flip=0 < k < n, repeats=detail)
