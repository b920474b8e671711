"""The end-of-session statistics: this run's CIs, the comparison with the baseline (when there is one) and the
gates evaluated on all of it. Called by EvalSession.finish on the controller; numpy loads here, once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from pytest_genai.compare.judge import build_judge, load_judge_spec
from pytest_genai.compare.pairing import ComparisonError
from pytest_genai.config import ConfigError
from pytest_genai.gates import evaluate_gates
from pytest_genai.runlog import TOP_CHANGES, BaselineSummary, CaseChangeSummary, Gate
from pytest_genai.types import CaseResult


@dataclass(frozen=True)
class CompareOptions:
    """compare.* of the config, with the flags that override it."""

    resamples: int = 2000
    confidence: float = 0.95
    f1_drop: float = 0.2
    intersect: bool = False
    require_baseline: bool = False
    require_power: bool = False  # compare.require_power: an underpowered baseline gate fails (else a warning)
    judge: Any = None  # compare.judge: None (the F1 judge) or a compare.judge.JudgeSpec
    judge_problem: str | None = None  # why compare.judge's LLM judge cannot be set up (reported when comparing)

    @classmethod
    def from_config(cls, config: Any, *, intersect: bool = False, require_baseline: bool = False) -> "CompareOptions":
        """Never raises for compare.judge (this also runs at session end): a judge that does not check out is kept
        as `judge_problem`; `load_judge_spec` at session start is what stops a run early on it."""
        try:
            judge, problem = load_judge_spec(config), None
        except ConfigError as exc:
            judge, problem = None, "; ".join(p.render(exc.path) for p in exc.problems)
        return cls(int(config.get("compare.bootstrap", 2000)), float(config.get("compare.confidence", 0.95)),
                   float(config.get("compare.f1_drop", 0.2)), bool(intersect or config.get("compare.intersect", False)),
                   bool(require_baseline), bool(config.get("compare.require_power", False)), judge, problem)


@dataclass(frozen=True)
class Measured:
    metrics: Mapping[str, float]  # the run's metrics, pref_win_rate and the flat comparison metrics added
    cis: Mapping[str, Any]
    gates: tuple[Gate, ...]
    baseline: BaselineSummary | None = None
    comparison: Mapping[str, Any] | None = None  # comparison.json
    errors: tuple[str, ...] = field(default=())
    tags: Mapping[str, str] = field(default_factory=dict)  # with a comparison: which judge decided pref_win_rate


# Depend on the number of repeats (and the policy, through the verdicts): compared only between runs alike.
BY_REPEATS = ("flip_rate", "pass_at_k", "pass_all_k")


def _summary(baseline: Any, comp: Any = None) -> BaselineSummary:
    x = baseline.record.execution if baseline.record is not None else None
    common = dict(ref=baseline.ref, source=baseline.source, run_id=baseline.run_id,
                  model_version=baseline.model_version, note=baseline.note,
                  repeat=x.repeat if x is not None else None, pass_policy=x.pass_policy if x is not None else None)
    if comp is None:
        return BaselineSummary(**common)

    def changes(cs: Sequence[Any]) -> tuple[CaseChangeSummary, ...]:
        return tuple(CaseChangeSummary(c.id, tuple(c.reasons)) for c in cs[:TOP_CHANGES])

    return BaselineSummary(
        **common, eval_set_hash=comp.baseline_eval_set_hash, intersect=comp.intersect, cases_paired=comp.cases_paired,
        only_candidate=len(comp.only_candidate), only_baseline=len(comp.only_baseline),
        baseline_metrics={m: mc.baseline for m, mc in comp.metrics.items() if math.isfinite(mc.baseline)},
        deltas=comp.delta_cis, mcnemar_p={k: t.p for k, t in comp.mcnemar.items()},
        p_values=comp.p_values, p_holm=comp.p_holm, mde={m: v for m, v in comp.mdes.items() if math.isfinite(v)},
        regressed_count=len(comp.regressed), improved_count=len(comp.improved),
        regressed=changes(comp.regressed), improved=changes(comp.improved))


def measure(results: Sequence[CaseResult], metrics: Mapping[str, float], gates_cfg: Mapping[str, Any], *, seed: int,
            options: CompareOptions, baseline: Any = None, eval_set_hash: str = "", runtime: Any = None,
            sanitizer: Any = None, repeats: tuple[int, str | None] | None = None) -> Measured:
    """CIs over this run's cases; with a resolved baseline the paired comparison (baseline results restricted to
    this run's cases when this run is a subset: -k, --lf); then the gates on values, CIs and paired deltas.
    An LLM judge (options.judge) calls its model through `runtime`'s response cache (the session's Runtime;
    None: no cache, live calls) with the session's `sanitizer`. `repeats`: this run's (repeats a case, sampled
    eval.pass_policy): against a baseline that ran others, the metrics of BY_REPEATS are not compared."""
    from pytest_genai.compare.comparison import bootstrappable, compare_runs, comparison_metrics, run_cis

    out = dict(metrics)
    cis = dict(run_cis(results, seed, options.resamples, options.confidence)) if results else {}
    comp, errors = None, []
    if baseline is not None and baseline.record is not None and results:
        ids = {r.id for r in results}
        base = [r for r in baseline.record.results if r.id in ids or options.intersect]
        x = baseline.record.execution
        alike = repeats is None or (x.repeat, x.pass_policy) == repeats
        try:
            comp = compare_runs(results, base, metrics=None if alike else [m for m in bootstrappable() if m not in BY_REPEATS],
                                seed=seed, resamples=options.resamples, confidence=options.confidence,
                                intersect=options.intersect, f1_drop=options.f1_drop, baseline_id=baseline.run_id,
                                baseline_source=baseline.ref, candidate_eval_set_hash=eval_set_hash,
                                baseline_eval_set_hash=baseline.record.provenance.eval_set_hash or None,
                                judge=build_judge(options.judge, options.judge_problem, runtime=runtime,
                                                  sanitizer=sanitizer, seed=seed))
        except ComparisonError as exc:
            errors.append(f"comparing with the baseline {baseline.ref} failed: {exc}")
    if comp is not None and comp.judge_error:
        errors.append(f"pref_win_rate: the judge ({comp.pref_judge}) failed, so it is not reported: {comp.judge_error}")
    if comp is not None:
        if math.isfinite(comp.pref_win_rate):
            out["pref_win_rate"] = float(comp.pref_win_rate)
            cis["pref_win_rate"] = comp.pref_win_rate_ci
    note = "none given (--genai-baseline or compare.baseline)" if baseline is None else (
        baseline.note or "the comparison failed")
    gates = tuple(evaluate_gates(gates_cfg, out, cis=cis, deltas=comp.delta_cis if comp is not None else {},
                                 baseline_available=comp is not None, require_baseline=options.require_baseline,
                                 baseline_note=note, mde=comp.mdes if comp is not None else {},
                                 require_power=options.require_power, pairs=comp.cases_paired if comp else 0))
    out.update({k: v for k, v in comparison_metrics(comp, cis).items() if k not in out})  # MLflow logs them
    summary = None if baseline is None else _summary(baseline, comp)
    tags = dict(comp.judge_tags) if comp is not None else {}
    return Measured(out, cis, gates, summary, comp.to_dict() if comp is not None else None, tuple(errors), tags)
