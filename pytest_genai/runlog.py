"""The run record: one versioned, plain-data description of an eval run (Inspect's EvalLog shape).

Everything that reads a run reads this: the terminal summary, MLflow logging, `pytest-genai show` and
`upload`, JUnit properties and every later feature (comparisons, release, reports). A run folder holds
`run.json` (the record without its results) and `results.jsonl` (one CaseResult a line). Serialisation
and the shipped JSON Schema (`runlog.schema.json`) are derived from the dataclasses below.
Run folders of release 0.1 (`summary.json`) are read through `from_legacy`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_genai.plain import from_plain, json_schema, to_plain
from pytest_genai.run_folder import GATES_FILE, LEGACY_SUMMARY, RESULTS_FILE, RUN_FILE, write_atomic, writer_alive
from pytest_genai.stats.ci import CI
from pytest_genai.types import CaseResult

SCHEMA_VERSION = 2
SCHEMA_FILE = Path(__file__).with_name("runlog.schema.json")
TOP_CHANGES = 10  # regressed / improved cases kept in the record (all of them are in comparison.json)

# A record's status. `running`: written by the journal while the session lives (tracking/journal.py); read back
# as `interrupted` once its session is gone. `interrupted`: Ctrl-C, SIGTERM, or the session died. `stopped`: -x.
COMPLETE, PARTIAL, STOPPED, FAILED, RUNNING, INTERRUPTED = "complete", "partial", "stopped", "failed", "running", "interrupted"
STATUSES = (COMPLETE, PARTIAL, STOPPED, FAILED, RUNNING, INTERRUPTED)


class RunLogError(Exception):
    """A run folder or run record that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Gate:
    """One promotion gate and its verdict."""

    metric: str
    expression: str
    value: float | None
    passed: bool
    reason: str = ""
    skipped: bool = False  # not checked (a baseline gate with no baseline): neither passed nor failed
    mde: float | None = None  # a baseline gate: the minimum detectable effect of its metric at this eval set's size
    underpowered: bool = False  # its margin is smaller than `mde`: the set cannot see what the gate asks about

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


@dataclass(frozen=True)
class Provenance:
    """Everything needed to say what was measured and to reproduce it."""

    config_path: str = ""
    config_hash: str = ""
    pipeline: str = ""
    seed: int = 0
    prompt_id: str | None = None
    prompt_version: str | None = None
    prompt_hash: str | None = None
    eval_set_path: str = ""
    eval_set_hash: str = ""
    index_fingerprint: str | None = None
    model_hashes: Mapping[str, str] = field(default_factory=dict)  # config key -> sha256 (llm.model_sha256, ...)
    env_lock_file: str | None = None
    env_lock_hash: str | None = None
    env_drift: int | None = None
    env_drift_lines: tuple[str, ...] = ()
    git_commit: str = "unknown"
    git_branch: str = "unknown"
    git_dirty: bool | None = None
    git_dirty_paths: tuple[str, ...] = ()
    python: str = ""
    platform: str = ""
    pytest_genai_version: str = ""
    redaction: str = "keyed"  # keyed | unkeyed | off


@dataclass(frozen=True)
class Tracking:
    """Where the run was (or is to be) logged; the URI has no credentials."""

    uri: str | None = None
    experiment: str = "pytest-genai"
    run_id: str | None = None
    experiment_id: str | None = None
    incomplete_run_id: str | None = None  # a logging attempt that did not finish: replaced on upload
    error: str | None = None
    traces: int = 0  # case traces logged with the run
    prompt_uri: str | None = None  # prompts:/NAME/VERSION in MLflow's Prompt Registry
    warnings: tuple[str, ...] = ()  # what the store could not take (traces, dataset, prompt); the run is logged


@dataclass(frozen=True)
class Execution:
    """How the cases ran (the execution plan) and the run-time options that change how, not what."""

    plan: str = "sequential"  # sequential | pool | batches | worker | shards (a merged run)
    size: int = 1
    reason: str = ""
    repeat: int = 1
    cache_mode: str = "off"
    workers: int = 0
    shard: str | None = None  # "I/N": this run is shard I of N of an eval (--genai-shard); never a full run
    group: str | None = None  # the eval the shard belongs to (--genai-group); on a merged run, the group merged
    merged_runs: tuple[str, ...] = ()  # on a merged run (`pytest-genai merge`): the shard runs, in shard order
    pass_policy: str | None = None  # repeats sampled (llm.temperature > 0): eval.pass_policy; None: no repeats or the determinism check


@dataclass(frozen=True)
class CostEstimate:
    """What the run was expected to cost before any model call (`--genai-dry-run`, `budget:`): calls, tokens and
    USD as low-high ranges (output tokens: the baseline's mean per call when there is one, else none, up to
    llm.max_tokens a call), the expected figures when a baseline gave them, and the wall time from its latencies."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens_low: int = 0
    output_tokens_high: int = 0
    cost_usd_low: float = 0.0
    cost_usd_high: float = 0.0
    output_tokens_expected: float | None = None  # from the baseline's mean output tokens per call
    cost_usd_expected: float | None = None
    wall_s_expected: float | None = None  # from the baseline's mean latency and the concurrency
    counted_by: str = ""  # llm.tokenizer: what counted the input tokens
    method: str = ""  # how the prompts were obtained (rendered by the pipeline, or from the prompt template)
    baseline: str | None = None  # the run the expected figures come from

    @property
    def tokens_low(self) -> int:
        return self.input_tokens + self.output_tokens_low

    @property
    def tokens_high(self) -> int:
        return self.input_tokens + self.output_tokens_high


@dataclass(frozen=True)
class CaseChangeSummary:
    """A case that regressed or improved against the baseline, and why (pass → fail, EM 1 → 0, F1 drop)."""

    id: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class BaselineSummary:
    """The baseline this run was compared with (or why there was none) and what the comparison found; the
    full per-case comparison is the run folder's comparison.json."""

    ref: str | None = None  # as given: --genai-baseline or compare.baseline
    source: str = ""  # run folder | mlflow run | registered model
    run_id: str | None = None  # the baseline's MLflow run, when known
    model_version: str | None = None  # NAME/VERSION when resolved from models:/
    note: str = ""  # why there is no baseline ("models:/X@production does not exist yet")
    eval_set_hash: str | None = None
    intersect: bool = False
    cases_paired: int = 0
    only_candidate: int = 0
    only_baseline: int = 0
    baseline_metrics: Mapping[str, float] = field(default_factory=dict)  # the baseline on the paired cases
    deltas: Mapping[str, CI] = field(default_factory=dict)  # paired CI of candidate - baseline
    mcnemar_p: Mapping[str, float] = field(default_factory=dict)  # "em", "pass": exact McNemar p of the flips
    p_values: Mapping[str, float] = field(default_factory=dict)  # per metric: two-sided bootstrap p of its delta
    p_holm: Mapping[str, float] = field(default_factory=dict)  # the same, Holm-adjusted over all of them
    mde: Mapping[str, float] = field(default_factory=dict)  # per metric: minimum detectable effect (power 0.8)
    regressed_count: int = 0
    improved_count: int = 0
    regressed: tuple[CaseChangeSummary, ...] = ()  # most severe first, at most TOP_CHANGES
    improved: tuple[CaseChangeSummary, ...] = ()
    repeat: int | None = None  # the baseline's repeats a case and (sampled) eval.pass_policy: k-dependent metrics
    pass_policy: str | None = None  # (flip_rate, pass_at_k, pass_all_k) are compared only when both are the same

    @property
    def available(self) -> bool:
        return self.cases_paired > 0


@dataclass(frozen=True)
class RunRecord:
    """One eval run: provenance, params, metrics, gates, errors and the per-case results."""

    schema_version: int
    status: str
    started_at: str
    ended_at: str
    provenance: Provenance
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    metric_units: Mapping[str, str] = field(default_factory=dict)  # from the metric registry of the run
    gates: tuple[Gate, ...] = ()
    gates_enforced: bool = True
    errors: tuple[str, ...] = ()
    execution: Execution = field(default_factory=Execution)
    tracking: Tracking = field(default_factory=Tracking)
    cis: Mapping[str, CI] = field(default_factory=dict)  # percentile-bootstrap CI of each aggregate that has one
    ci_confidence: float | None = None  # None: no CIs were computed
    ci_resamples: int = 0
    baseline: BaselineSummary | None = None  # None: no baseline was asked for
    estimate: CostEstimate | None = None  # the estimate made before the run (budget:), to hold against the actual
    results: tuple[CaseResult, ...] = ()

    @property
    def partial(self) -> bool:
        return self.status != "complete"

    @property
    def gates_passed(self) -> bool:
        """Every gate passed or was skipped (a baseline gate with no baseline)."""
        return gates_verdict(self.gates)

    @property
    def failing_gates(self) -> list[Gate]:
        return failing(self.gates)

    @property
    def passed(self) -> bool:
        """What CI asks: the gates held (where they are enforced), nothing went wrong, and the session ended (a
        running or interrupted run passes nothing)."""
        return (self.gates_passed or not self.gates_enforced) and not self.errors and self.status not in (RUNNING, INTERRUPTED)

    def with_tracking(self, **changes: Any) -> "RunRecord":
        return replace(self, tracking=replace(self.tracking, **changes))

    def to_json(self, with_results: bool = False) -> dict[str, Any]:
        if with_results:
            return to_plain(self)
        data = to_plain(replace(self, results=()))  # not converting 10,000 results only to drop them
        data.pop("results")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], results: Iterable[CaseResult] = ()) -> "RunRecord":
        record = from_plain(cls, data)
        return replace(record, results=tuple(results)) if results else record


def is_skipped(gate: Gate) -> bool:
    """A gate that was not checked (a baseline gate with no baseline): neither passed nor failed."""
    return gate.skipped


def failing(gates: Iterable[Gate]) -> list[Gate]:
    """The gates that failed: not passed and not skipped."""
    return [g for g in gates if not g.passed and not is_skipped(g)]


def gates_verdict(gates: Iterable[Gate]) -> bool:
    """The session's gate verdict: every gate passed or was skipped."""
    return not failing(gates)


def schema() -> dict[str, Any]:
    return json_schema(RunRecord, title="pytest-genai run record")


# --------------------------------------------------------------------------- run folders

def write_run(run_dir: Path, record: RunRecord) -> None:
    """`results.jsonl` then `run.json`, each written to a temp file and renamed: a reader never sees half."""
    write_atomic(run_dir / RESULTS_FILE, "".join(result_line(r) + "\n" for r in record.results))
    write_record(run_dir, record)


def write_record(run_dir: Path, record: RunRecord) -> None:
    write_atomic(run_dir / RUN_FILE, json.dumps(record.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_run(path: str | os.PathLike[str], with_results: bool = True) -> RunRecord:
    """A run folder (current or 0.1 layout) as a RunRecord."""
    run_dir = Path(path)
    if (run_dir / RUN_FILE).is_file():
        data = _load_json(run_dir / RUN_FILE)
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise RunLogError(f"{run_dir / RUN_FILE}: schema_version {version!r} is newer than this pytest-genai "
                              f"reads ({SCHEMA_VERSION}): upgrade pytest-genai")
        record = RunRecord.from_json(data, read_results(run_dir) if with_results else ())
        if record.status == RUNNING and not writer_alive(run_dir):
            record = replace(record, status=INTERRUPTED)  # its session died (killed, crashed) before its end
        return record
    if (run_dir / LEGACY_SUMMARY).is_file():
        return from_legacy(run_dir, with_results)
    raise RunLogError(f"{run_dir} is not a pytest-genai run folder (no {RUN_FILE} or {LEGACY_SUMMARY})")


def read_results(run_dir: Path) -> list[CaseResult]:
    """The case results of a run folder. A last line that is not JSON and has no newline is a write cut short (a
    crash or a full disk mid-line: that case did not finish) and is skipped; any other bad line is an error."""
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        return []
    out = []
    with path.open("rb") as fh:  # bytes: a torn line may end inside a UTF-8 character
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    plain = json.loads(line)
                except ValueError as exc:
                    if not line.endswith(b"\n"):  # only the last line can lack its newline
                        break
                    raise RunLogError(f"{path}:{n}: not a case result: {exc}") from None
                try:
                    out.append(CaseResult.from_dict(plain))
                except (ValueError, KeyError, TypeError) as exc:
                    raise RunLogError(f"{path}:{n}: not a case result: {exc}") from None
    return out


def from_legacy(run_dir: Path, with_results: bool = True) -> RunRecord:
    """A 0.1 run folder: summary.json (metrics, params, tags) + gates.json + results.jsonl."""
    summary = _load_json(run_dir / LEGACY_SUMMARY)
    tags: dict[str, str] = dict(summary.get("tags") or {})
    gates_file = run_dir / GATES_FILE
    gates_data = _load_json(gates_file) if gates_file.is_file() else {}
    gates = tuple(Gate(g["metric"], g.get("gate", ""), g.get("value"), bool(g.get("passed")), g.get("reason", ""))
                  for g in gates_data.get("gates", ()))
    prov = Provenance(
        config_hash=tags.get("config_hash", ""), seed=int(tags.get("genai.seed", 0) or 0),
        prompt_id=tags.get("prompt.id"), prompt_version=tags.get("prompt.version"), prompt_hash=tags.get("prompt.hash"),
        eval_set_hash=tags.get("eval_set.hash", ""), index_fingerprint=tags.get("index.fingerprint"),
        model_hashes={k: v for k, v in tags.items() if k.endswith("_sha256")},
        env_lock_hash=None if tags.get("env.lock_hash") in (None, "none") else tags["env.lock_hash"],
        git_commit=tags.get("git_commit", "unknown"), git_branch=tags.get("git_branch", "unknown"),
        git_dirty={"true": True, "false": False}.get(tags.get("git_dirty", "")),
        python=tags.get("env.python", ""), platform=tags.get("env.platform", ""),
        pipeline=str((summary.get("params") or {}).get("pipeline", "")),
        redaction="off" if tags.get("safety.redact") == "false" else "unkeyed")
    metrics = {k: float("nan") if v is None else float(v) for k, v in (summary.get("metrics") or {}).items()}
    stamp = run_dir.name[:15]
    return RunRecord(
        schema_version=1, status="partial" if gates_data.get("partial") or tags.get("genai.partial") == "true" else "complete",
        started_at=stamp, ended_at=stamp, provenance=prov, params=dict(summary.get("params") or {}), tags=tags,
        metrics=metrics, gates=gates, gates_enforced=bool(gates_data.get("enforced", True)),
        tracking=Tracking(experiment=summary.get("experiment") or "pytest-genai", run_id=summary.get("mlflow_run_id"),
                          experiment_id=summary.get("mlflow_experiment_id"),
                          incomplete_run_id=summary.get("mlflow_incomplete_run_id")),
        results=tuple(read_results(run_dir)) if with_results else ())


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except ValueError as exc:
        raise RunLogError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RunLogError(f"{path}: expected a JSON object")
    return data


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False)


def result_line(result: CaseResult) -> str:
    """A case result as its results.jsonl line (no newline)."""
    return _dumps(result.to_dict())


def plain_line(plain: Mapping[str, Any]) -> str:
    """The same line from the result's `to_dict()` (plain data already)."""
    return _dumps(plain)


if __name__ == "__main__":  # regenerate the shipped schema: python -m pytest_genai.runlog
    SCHEMA_FILE.write_text(json.dumps(schema(), indent=2) + "\n", "utf-8")
    print(f"wrote {SCHEMA_FILE}")
