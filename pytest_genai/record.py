"""The run record of a finished set of case results: registry metrics, CIs, the comparison with a baseline,
gates and tags, sanitized at the one boundary. One function for a session's end and for `pytest-genai merge`,
so a merged sharded eval has exactly the numbers of the same cases run unsharded."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from pytest_genai.compare.measure import CompareOptions, measure
from pytest_genai.config import GenaiConfig
from pytest_genai.metrics.registry import METRICS, aggregate
from pytest_genai.runlog import RUNNING, SCHEMA_VERSION, Execution, Provenance, RunRecord, Tracking
from pytest_genai.tracking.envlock import compare_env
from pytest_genai.tracking.gitinfo import git_info
from pytest_genai.tracking.tags import run_tags
from pytest_genai.types import CaseResult


def now() -> str:
    """A record's time stamp: UTC, ISO 8601 to the millisecond (`2026-12-07T04:16:52.123Z`): the MLflow run's start
    and end are these, and two sessions started in the same second must still sort in the order they ran."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def build_record(results: Sequence[CaseResult], *, config: GenaiConfig, cases_total: int, eval_set_hash: str,
                 provenance: Provenance, execution: Execution, status: str, errors: Sequence[str], started_at: str,
                 enforce: bool, tracking: Tracking, sanitizer: Any, compare: Any = None, baseline: Any = None,
                 extra_tags: Mapping[str, str] | None = None, runtime: Any = None) -> tuple[RunRecord, dict[str, Any] | None]:
    """The run record from per-case results (in eval-set order): registry metrics, CIs, the comparison with a
    baseline, gates, tags; and comparison.json (sanitized) or None. One function for a session's end and for
    `pytest-genai merge`, so a merged sharded eval has exactly the numbers of the same cases run unsharded."""
    facts: dict[str, float] = {"cases_total": float(cases_total)}
    if provenance.env_lock_hash is not None:
        facts["env_drift"] = float(provenance.env_drift or 0)
    metrics = aggregate(list(results), facts)
    options = compare or CompareOptions.from_config(config)
    measured = measure(results, metrics, config.get("gates") or {}, seed=provenance.seed, options=options,
                       baseline=baseline, eval_set_hash=eval_set_hash, runtime=runtime, sanitizer=sanitizer,
                       repeats=(execution.repeat, execution.pass_policy))
    comparison = None if measured.comparison is None else sanitizer.obj(measured.comparison)
    record = RunRecord(schema_version=SCHEMA_VERSION, status=status, started_at=started_at, ended_at=now(),
                       provenance=provenance, params=config.params(), metrics=dict(measured.metrics),
                       gates=measured.gates, gates_enforced=enforce or status == "complete",
                       errors=tuple(errors) + tuple(measured.errors), execution=execution, tracking=tracking,
                       cis=dict(measured.cis), ci_confidence=options.confidence if measured.cis else None,
                       ci_resamples=options.resamples if measured.cis else 0, baseline=measured.baseline,
                       results=tuple(results))
    units = {m: METRICS.get(m).unit for m in record.metrics if m in METRICS and METRICS.get(m).unit}
    record = replace(record, tags={**run_tags(record), **measured.tags, **(extra_tags or {})}, metric_units=units)
    return sanitize_record(record, sanitizer), comparison


def running_record(*, config: GenaiConfig, provenance: Provenance, execution: Execution, started_at: str,
                   tracking: Tracking, sanitizer: Any, cases_total: int) -> RunRecord:
    """The record a journal starts with: what the session pins (provenance, params, plan), status `running`, no
    metrics yet. `show` and a resume read it; the session's end writes the final record over it."""
    record = RunRecord(schema_version=SCHEMA_VERSION, status=RUNNING, started_at=started_at, ended_at=started_at,
                       provenance=provenance, params=config.params(), metrics={"cases_total": float(cases_total)},
                       execution=execution, tracking=tracking, gates_enforced=False)
    return sanitize_record(replace(record, tags=run_tags(record)), sanitizer)


def cache_tags(cache_mode: str, results: Sequence[CaseResult]) -> dict[str, str]:
    """How the answers were obtained: measured live, replayed from the cache, or a mix."""
    answered = [r for r in results if r.cached is not None]
    hits = sum(bool(r.cached) for r in answered)
    source = "measured" if hits == 0 else ("recorded" if hits == len(answered) else "mixed")
    tags = {"genai.cache_mode": cache_mode, "genai.latency_source": source}
    if cache_mode != "off":
        tags.update({"genai.cache_hits": str(hits), "genai.cache_misses": str(len(answered) - hits)})
    return tags


def sanitize_record(record: RunRecord, sanitizer: Any) -> RunRecord:
    """The one boundary for the run record: every string in it (results are sanitized where they are made)."""
    plain = record.to_json()
    data = sanitizer.obj(plain)
    data["tracking"] = sanitizer.secrets_only().obj(plain["tracking"])  # where to log it must stay usable
    return RunRecord.from_json(data, record.results)


def capture_env(config: GenaiConfig) -> tuple[Any, Any]:
    """The installed packages against the lock, and the git state: what the record's provenance pins."""
    return compare_env(config.resolve_path("env.lock_file")), git_info(config.base_dir)


def dirty_state(git: Any, results_dir: Any) -> dict[str, Any]:
    """The work tree's dirty state, minus what pytest-genai itself writes (run folders, a sqlite store and its
    artifact folder, the cache): a second run in a clean checkout is not 'dirty' because of the first."""
    paths = tuple(getattr(git, "dirty_paths", ()) or ())
    if git.dirty is None:
        return {"git_dirty": None, "git_dirty_paths": paths}
    ours = {".pytest-genai", "mlruns", "mlflow.db", "mlflow.db-journal"}
    if results_dir:
        ours.add(str(results_dir).strip("./").split("/")[0])
    kept = tuple(p for p in paths if p.split(": ", 1)[-1].strip("/").split("/")[0] not in ours)
    more = int(getattr(git, "dirty_count", len(paths)) or 0) > len(paths)
    return {"git_dirty": bool(kept) or more, "git_dirty_paths": kept}
