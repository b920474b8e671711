"""`pytest-genai merge ID`: the shards of one eval (`--genai-shard I/N --genai-group ID`) become one run.

Every shard's run record and per-case results are read back from the tracking store; the shards must be 1..N, each
once, measured with one config, eval set, prompt and commit, and together cover the eval set exactly. The merged
record is built by the function a session ends with (`record.build_record`) from the union of the results, so its
metrics, CIs and gates are those of the same cases run on one machine; it is `complete`, its gates are enforced,
it is written to a local run folder and logged as the content of the group's parent run, which is what registry
promotion (`genai.eval_run_id`) and baselines then see; after it no run of the group is RUNNING (`shard.store`
reads the shards and settles the parents). Exit 0: merged, gates passed; 1: gates failed or a run error; 2: the
shards cannot be merged (the message names the shard)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from pytest_genai import publish
from pytest_genai.compare.baseline import BaselineError, check_comparable
from pytest_genai.compare.measure import CompareOptions
from pytest_genai.config import ConfigError, load_config
from pytest_genai.record import build_record, cache_tags
from pytest_genai.registries import load_conftest
from pytest_genai.release.register import RegistryError
from pytest_genai.report.terminal import Line, summary_lines, tracking_lines, verdict_lines
from pytest_genai.run_folder import (
    COMPARISON_FILE,
    EVAL_SET_DIR,
    GATES_FILE,
    RENDERS_FILE,
    RESULTS_FILE,
    SHARDS_FILE,  # in the merged run folder: which shard runs it was made from
    write_atomic,
)
from pytest_genai.runlog import (
    Execution,
    Provenance,
    RunLogError,
    RunRecord,
    Tracking,
    read_run,
    write_record,
    write_run,
)
from pytest_genai.session import EvalSession, SessionSetupError
from pytest_genai.shard.select import ShardError, check_group, shard_of
from pytest_genai.shard.store import MergeError, Shard, fetch_shards, ready_to_merge, settle_parent, shard_snapshot
from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking.local import dumps, eval_set_snapshot, new_run_dir, write_config_and_prompt, write_report
from pytest_genai.tracking.mlflow_client import resolve_uri
from pytest_genai.tracking.runref import resolve_baseline
from pytest_genai.tracking.tags import run_tags
from pytest_genai.types import CaseResult


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("merge", help="merge the shards of a sharded eval (--genai-shard, --genai-group ID) into "
                                            "its parent run: metrics and gates over every case (exit 1 if a gate fails)")
    p.add_argument("group", metavar="ID", help="the eval group (--genai-group of the shards)")
    p.add_argument("--config", default="genai.yaml", help="the config the shards ran (default genai.yaml)")
    p.add_argument("--tracking-uri", default=None,
                   help="default: the config's tracking.uri, then MLFLOW_TRACKING_URI, then MLflow's default store")
    p.add_argument("--shards", type=int, default=None, metavar="N",
                   help="how many shards there must be (default: the N the shards recorded)")
    p.add_argument("--register", action="store_true",
                   help="then register the merged eval like --genai-register (or registry.register_on_pass): a new "
                        "version of registry.model_name pointing at the parent run, if every gate passed")
    return p


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    try:
        record, where = merge(args.group, Path(args.config), args.tracking_uri, args.shards)
    except (MergeError, ShardError, ConfigError, SessionSetupError, RunLogError, BaselineError, OSError) as exc:
        print(f"pytest-genai merge: {exc}", file=sys.stderr)
        return 2

    x = record.execution
    echo(f"merged {len(x.merged_runs)} shards of group {x.group}: status {record.status}, "
         f"{len(record.results)} cases, config_hash {record.provenance.config_hash[:12]}")
    for line in summary_lines(record) + tracking_lines(record, where) + verdict_lines(record):
        echo(line.text)
    failed = not record.passed
    if getattr(args, "register", False) or _register_on_pass(Path(args.config)):
        try:
            echo(register(record, Path(args.config), args.tracking_uri))
        except RegistryError as exc:
            echo(f"REGISTRATION FAILED: {exc}")
            failed = True
    return 1 if failed else 0


def _register_on_pass(config_path: Path) -> bool:
    return bool(load_config(config_path).get("registry.register_on_pass"))


def register(record: RunRecord, config_path: Path, tracking_uri: str | None) -> str:
    """What --genai-register does at the end of a session (publish.register_record), for the merged record (the
    parent run): one line, a refusal (gates failed, dirty tree, ...) or the version it became. RegistryError when
    registering broke."""
    session = EvalSession.from_config(load_config(config_path))
    cfg = session.config
    if not cfg.get("registry.model_name"):
        raise RegistryError(str(cfg.error("registry.model_name", "--register needs the registered model's name")))
    line, error = publish.register_record(record, config=cfg, prompt=session.prompt, uri=_uri(tracking_uri, cfg),
                                          sanitizer=session.sanitizer)
    if error is not None:
        raise RegistryError(error)
    return line.text


def merge_if_last(out: Any, *, group: str, shards: int, config_path: Path, uri: str | None, experiment: str,
                  sanitizer: Any) -> None:
    """The last shard of a group to finish (all N shard runs logged, the parent not filled yet) merges the group
    into its parent run, as `pytest-genai merge ID` would, and reports the merged verdict: a failed gate of the
    whole eval fails this session. Two shards finishing at the same moment may both merge: the merged record is
    the same (a deterministic function of the shards), logged twice into the one parent. `out`: the shard session's
    publish.Published (its lines and merge_failed)."""
    try:
        if not ready_to_merge(group, shards, uri, experiment):
            return
        merged, where = merge(group, config_path, uri, shards)
    except MergeError as exc:
        out.lines.append(Line(f"merge: group {group} not merged by this shard: {exc}", "yellow"))
        return
    except Exception as exc:  # the store, mid-merge: the shards are logged; `pytest-genai merge` can retry
        why = sanitizer.secrets_only().text(f"{type(exc).__name__}: {str(exc)[:300]}")
        out.lines.append(Line(f"merge: group {group} not merged by this shard: {why}; run "
                              f"`pytest-genai merge {group}`", "yellow"))
        return
    verdict = "gates passed" if merged.passed else "GATES FAILED"
    out.merge_failed = not merged.passed
    out.lines.append(Line(f"merged: this was the last of the {shards} shards of group {group}: parent run "
                          f"{merged.tracking.run_id}, {len(merged.results)} cases, {verdict} (local results: {where})",
                          "green" if merged.passed else "red-bold"))


# --------------------------------------------------------------------------- pure checks and the merged record

def check_shards(shards: Sequence[Shard], group: str, expected: int | None = None) -> int:
    """N, when shards 1..N are each present exactly once; else MergeError naming the missing or duplicated shard."""
    if not shards:
        raise MergeError(f"no shard run of group {group} in the tracking store (tag genai.group={group}, "
                         "genai.kind=shard): did the shards log (tracking.enabled, the same store and experiment)?")
    counts = sorted({s.count for s in shards})
    if expected is None and len(counts) > 1:
        raise MergeError(f"the shards of group {group} disagree on N: " + ", ".join(sorted({s.label for s in shards})))
    n = expected if expected is not None else counts[0]
    if n < 1:
        raise MergeError(f"--shards {n}: must be at least 1")
    other = [s for s in shards if s.count != n]
    if other:
        raise MergeError(f"shard {other[0].label} (run {other[0].run_id}) of group {group} is not one of {n} shards")
    problems = []
    for i in range(1, n + 1):
        mine = [s for s in shards if s.index == i]
        if not mine:
            problems.append(f"shard {i}/{n} is missing")
        elif len(mine) > 1:
            problems.append(f"shard {i}/{n} is duplicated ({len(mine)} runs: {', '.join(s.run_id for s in mine)})")
    if problems:
        raise MergeError(f"group {group}: " + "; ".join(problems))
    return n


def check_consistent(shards: Sequence[Shard], *, config_hash: str, eval_set_hash: str, case_ids: Sequence[str]) -> None:
    """One config, eval set, prompt and commit across the shards (and the config given to merge); each shard holds
    only its own cases and together they are the eval set."""
    first = shards[0]
    for what, get, want in (("config_hash", lambda p: p.config_hash, config_hash),
                            ("eval_set.hash", lambda p: p.eval_set_hash, eval_set_hash),
                            ("prompt.hash", lambda p: p.prompt_hash, get_attr(first, "prompt_hash")),
                            ("git commit", lambda p: p.git_commit, get_attr(first, "git_commit"))):
        for s in shards:
            have = get(s.record.provenance)
            if have != want:
                source = "the config given to merge" if what in ("config_hash", "eval_set.hash") else f"shard {first.label}"
                raise MergeError(f"shard {s.label} (run {s.run_id}) was measured with another {what}: {have} vs "
                                 f"{want} of {source}: the shards are not one eval")
    expected = set(case_ids)
    seen: dict[str, str] = {}
    for s in shards:
        for r in s.record.results:
            if r.id in seen:
                raise MergeError(f"case {r.id!r} is in shard {seen[r.id]} and in shard {s.label}")
            seen[r.id] = s.label
            if r.id not in expected:
                raise MergeError(f"shard {s.label} (run {s.run_id}) has case {r.id!r}, which is not in the eval set")
            if shard_of(r.id, s.count) != s.index:
                raise MergeError(f"shard {s.label} (run {s.run_id}) has case {r.id!r} of shard "
                                 f"{shard_of(r.id, s.count)}/{s.count}: it was not selected by --genai-shard")
    missing = [c for c in case_ids if c not in seen]
    if missing:
        shown = ", ".join(f"{c} (shard {shard_of(c, first.count)}/{first.count})" for c in missing[:5])
        more = f", … ({len(missing) - 5} more)" if len(missing) > 5 else ""
        raise MergeError(f"{len(missing)} case(s) of the eval set have no result in any shard: {shown}{more} "
                         "(a shard run with -k, or stopped early)")


def get_attr(shard: Shard, name: str) -> Any:
    return getattr(shard.record.provenance, name)


def merged_provenance(shards: Sequence[Shard]) -> Provenance:
    """The shards share what was measured; of the environment the worst shard is kept (highest drift, dirty)."""
    worst = max(shards, key=lambda s: s.record.provenance.env_drift or 0).record.provenance
    base = shards[0].record.provenance
    dirty = [s.record.provenance.git_dirty for s in shards]
    paths = tuple(dict.fromkeys(p for s in shards for p in s.record.provenance.git_dirty_paths))
    return replace(base, env_lock_hash=worst.env_lock_hash, env_drift=worst.env_drift,
                   env_drift_lines=worst.env_drift_lines, git_dirty=None if None in dirty else any(dirty),
                   git_dirty_paths=paths)


def merged_results(shards: Sequence[Shard], case_ids: Sequence[str]) -> list[CaseResult]:
    order = {c: i for i, c in enumerate(case_ids)}
    return sorted((r for s in shards for r in s.record.results), key=lambda r: order.get(r.id, len(order)))


def pipeline_tags(record: RunRecord) -> dict[str, str]:
    """The tags only the shard's built pipeline knew (index fingerprint, model sha256s, index cache)."""
    derived = run_tags(record)
    return {k: v for k, v in record.tags.items()
            if k not in derived and not k.startswith("genai.cache_") and k not in ("genai.cache_mode", "genai.latency_source")}


def merge_record(shards: Sequence[Shard], *, session: Any, group: str, tracking: Tracking, baseline: Any = None,
                 compare: Any = None) -> tuple[RunRecord, dict[str, Any] | None]:
    """The merged record: `build_record` over the union of the shards' results, complete, gates enforced."""
    ids = [c.id for c in session.eval_set.cases]
    results = merged_results(shards, ids)
    first = shards[0].record
    errors = [f"shard {s.label}: {e}" for s in shards for e in s.record.errors]
    status = "failed" if any(s.record.status == "failed" for s in shards) else "complete"
    execution = Execution(plan="shards", size=len(shards), reason=f"merged from {len(shards)} shards of group {group}",
                          repeat=first.execution.repeat, cache_mode=first.execution.cache_mode, workers=0,
                          pass_policy=first.execution.pass_policy,
                          group=group, merged_runs=tuple(s.run_id for s in shards))
    return build_record(results, config=session.config, cases_total=len(session.eval_set),
                        eval_set_hash=session.eval_set.sha256, provenance=merged_provenance(shards), execution=execution,
                        status=status, errors=errors, started_at=min(s.record.started_at for s in shards), enforce=True,
                        tracking=tracking, sanitizer=session.sanitizer, compare=compare, baseline=baseline,
                        extra_tags={**cache_tags(first.execution.cache_mode, results), **pipeline_tags(first)})


# --------------------------------------------------------------------------- the store and the run folder

def write_merged_dir(run_dir: Path, session: Any, record: RunRecord, comparison: Any, shards: Sequence[Shard],
                     client: Any = None) -> None:
    """The merged run folder: config, prompt, eval-set snapshot, renders, gates, comparison, which shards, the
    HTML report, the record. Each shard's environment (installed packages, drift) stays with its own run."""
    san = session.sanitizer
    write_config_and_prompt(run_dir, session)
    (run_dir / EVAL_SET_DIR).mkdir()
    if not shard_snapshot(client, shards[0].run_id, run_dir):  # the shards logged the same sanitized snapshot
        (run_dir / EVAL_SET_DIR / session.eval_set.path.name).write_bytes(eval_set_snapshot(session.eval_set.raw, san))
    with (run_dir / RENDERS_FILE).open("w", encoding="utf-8") as fh:
        for r in record.results:
            fh.write(json.dumps({"id": r.id, "prompt": r.prompt}, ensure_ascii=False) + "\n")
    (run_dir / GATES_FILE).write_text(dumps({
        "passed": record.gates_passed, "enforced": record.gates_enforced, "status": record.status,
        "gates": [g.to_dict() for g in record.gates]}, indent=2), "utf-8")
    if comparison is not None:
        (run_dir / COMPARISON_FILE).write_text(dumps(comparison, indent=2) + "\n", "utf-8")
    (run_dir / SHARDS_FILE).write_text(dumps({"group": record.execution.group, "shards": [
        {"shard": s.label, "run_id": s.run_id, "status": s.record.status, "cases": len(s.record.results),
         "started_at": s.record.started_at, "ended_at": s.record.ended_at,
         "env_lock_hash": s.record.provenance.env_lock_hash, "env_drift": s.record.provenance.env_drift,
         "execution": s.record.execution.plan} for s in shards]}, indent=2) + "\n", "utf-8")
    write_report(run_dir, record, comparison, san, render=publish.html_report)
    lines = {k: v for s in shards for k, v in s.lines.items()}
    if all(r.id in lines for r in record.results):  # the shards' own lines, in eval-set order
        write_atomic(run_dir / RESULTS_FILE, "".join(lines[r.id] + "\n" for r in record.results))
        write_record(run_dir, record)
    else:
        write_run(run_dir, record)


def _uri(cli_uri: str | None, config: Any) -> str | None:
    if cli_uri:
        return resolve_uri(cli_uri, Path.cwd())
    cfg_uri = config.get("tracking.uri")
    if cfg_uri:
        return resolve_uri(str(cfg_uri), config.base_dir)
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def merge(group: str, config_path: Path, tracking_uri: str | None = None, expected: int | None = None) -> tuple[RunRecord, Path]:
    """Fetch, check, build, write locally, log into the parent; the record as logged and its run folder."""
    check_group(group, "ID")
    if not config_path.is_file():
        raise MergeError(f"--config {config_path}: no such file")
    load_conftest(config_path.resolve().parent)
    session = EvalSession.from_config(load_config(config_path))
    cfg = session.config
    uri, experiment = _uri(tracking_uri, cfg), str(cfg.get("tracking.experiment"))
    with mlflow_client.quiet(), mlflow_client.bounded(2, 15):
        client = mlflow_client.client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise MergeError(f"the tracking store {mlflow_client.public_uri(uri) or 'MLflow default'} has no experiment "
                             f"{experiment!r} (tracking.experiment): no shard of group {group} was logged there")
        exp_id = str(exp.experiment_id)
        fetched = fetch_shards(client, uri, exp_id, group)
        shards = fetched.shards
        try:
            check_shards(shards, group, expected)
        except MergeError as exc:
            raise MergeError("; ".join((str(exc), *fetched.left_out))) from None
        check_consistent(shards, config_hash=cfg.hash, eval_set_hash=session.eval_set.sha256,
                         case_ids=[c.id for c in session.eval_set.cases])
        baseline = _baseline(cfg, uri, session)
        record, comparison = merge_record(shards, session=session, group=group, baseline=baseline,
                                          compare=CompareOptions.from_config(cfg),
                                          tracking=Tracking(uri=session.sanitizer.secrets_only().text(uri),
                                                            experiment=experiment))
        root = cfg.resolve_path("tracking.results_dir")
        assert root is not None
        run_dir = new_run_dir(root, cfg.hash)
        write_merged_dir(run_dir, session, record, comparison, shards, client)
        parent = settle_parent(client, exp_id, group, shards)
        try:
            publish.log_run(run_dir, uri, experiment, into_run_id=parent)
        except Exception as exc:
            error = session.sanitizer.secrets_only().text(f"{type(exc).__name__}: {str(exc)[:500]}")
            write_record(run_dir, read_run(run_dir, False).with_tracking(error=error))
            raise MergeError(f"logging the merged run into parent run {parent} failed: {error} (the merged run is "
                             f"in {run_dir}: `pytest-genai upload` cannot fill a parent, re-run merge)") from None
    return replace(read_run(run_dir, with_results=False), results=record.results), run_dir


def _baseline(cfg: Any, uri: str | None, session: Any) -> Any:
    """compare.baseline of the config, resolved as a session resolves it (a shard compares on its own cases;
    the merged run on all of them, like the unsharded run)."""
    ref = cfg.get("compare.baseline")
    if not ref:
        return None

    baseline = resolve_baseline(str(ref), uri, cfg.base_dir)
    if baseline.record is not None:
        why = check_comparable(baseline.record, session.eval_set.sha256, [c.id for c in session.eval_set.cases],
                               intersect=bool(cfg.get("compare.intersect", False)))
        if why:
            raise MergeError(f"compare.baseline {ref}: {why}")
    return baseline
