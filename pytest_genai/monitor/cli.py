"""`pytest-genai monitor NAME --alias production --since 1h`: the served traffic of the version behind an alias,
aggregated into a monitoring run (tag genai.kind=monitor) with the eval's metric names, checked against
`monitor.slo`, shown in the eval's table. Exit 0: SLOs hold; 1: a breach (one ALERT line); 2: bad input."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pytest_genai import names
from pytest_genai.config import ConfigError, load_config
from pytest_genai.config.slo import slo_problem
from pytest_genai.gates import evaluate_gates
from pytest_genai.metrics.registry import METRICS
from pytest_genai.monitor import aggregate as agg
from pytest_genai.monitor.aggregate import FeedbackError, iso, skip_without_traffic
from pytest_genai.monitor.record import DEFAULT_SINK, SinkError, local_path, read_local, read_traces
from pytest_genai.names import (
    TAG_ALIAS,
    TAG_MODEL_ID,
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    TAG_SINK,
    TAG_SLO_PASSED,
    TAG_WINDOW,
    TAG_WINDOW_END,
    TAG_WINDOW_START,
)
from pytest_genai.release.ops import client_for, version_of
from pytest_genai.release.register import RegistryError
from pytest_genai.report.terminal import fmt, summary_lines
from pytest_genai.runlog import Gate, Provenance, RunRecord, failing, gates_verdict
from pytest_genai.sanitize import Sanitizer
from pytest_genai.tracking.mlflow_client import quiet, resolve_uri, use_tracking_uri
from pytest_genai.tracking.owner import owner_tags
from pytest_genai.tracking.runref import resolve

SLO_TAG_PREFIX = "slo."


class MonitorError(Exception):
    """Bad input for `monitor` (exit 2); one line saying what and why."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("monitor", help="aggregate a served model's recorded traffic into a monitoring run and "
                                              "check monitor.slo (exit 1 on a breach)")
    p.add_argument("name", help="registered model name")
    p.add_argument("--alias", default="production", help="the alias whose version is monitored (default production)")
    when = p.add_argument_group("window (default: everything recorded)")
    when.add_argument("--since", default=None, help="a duration ago (30m, 1h, 2d) or an ISO time")
    when.add_argument("--until", default=None, help="a duration ago or an ISO time (default now)")
    when.add_argument("--last", type=int, default=None, metavar="N", help="the N most recent requests")
    p.add_argument("--config", default="genai.yaml", help="the config whose monitor section is in force (default genai.yaml)")
    p.add_argument("--feedback", default=None, metavar="FILE",
                   help="JSONL of {request_id, answers?: [...], thumbs?: up|down}: em/f1 and feedback_positive_rate")
    p.add_argument("--sink", default=None, choices=("local", "mlflow"), help="where the records are (default monitor.sink)")
    p.add_argument("--path", default=None, help="the local sink's file (default: GENAI_MONITOR_PATH, else monitor.path, "
                                                "relative to the current folder: run monitor where the model is served)")
    p.add_argument("--tracking-uri", default=None,
                   help="default: MLFLOW_TRACKING_URI, then the config's tracking.uri, then MLflow's default store")
    p.add_argument("--no-log", action="store_true", help="print only: do not create the monitoring run")
    return p


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    try:
        report = build_report(args)
    except (MonitorError, ConfigError, RegistryError, SinkError, FeedbackError, ValueError, OSError) as exc:
        print(f"pytest-genai monitor: {exc}", file=sys.stderr)
        return 2
    for line in report.lines:
        echo(line)
    if report.run_id:
        echo(f"mlflow run: {report.run_id} (monitoring run, experiment {report.experiment_id})")
    if report.alert:
        echo(report.alert)
        return 1
    return 0


@dataclass(frozen=True)
class Report:
    metrics: Mapping[str, float]
    gates: tuple[Any, ...]
    lines: tuple[str, ...]
    alert: str | None
    run_id: str | None
    experiment_id: str | None


def build_report(args: argparse.Namespace) -> Report:
    import os

    config = load_config(args.config)
    section = config.get("monitor") or {}
    slo = dict(section.get("slo") or {})
    now = time.time()
    if args.last is not None and (args.since or args.until):
        raise MonitorError("--last N is a window by itself: give it without --since/--until")
    if args.last is not None and args.last < 1:
        raise MonitorError(f"--last must be at least 1 (got {args.last})")
    window = agg.Window(agg.parse_time(args.since, now) if args.since else None,
                        agg.parse_time(args.until, now) if args.until else None, args.last)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or resolve_uri(config.get("tracking.uri"), config.base_dir)
    with quiet():
        client = client_for(uri)
        version = version_of(client, args.name, args.alias)
    model_id = model_id_of(version)
    tags = version.tags or {}
    eval_run_id = tags.get("genai.eval_run_id")
    experiment_id = _experiment_of(client, eval_run_id)

    sink = args.sink or section.get("sink") or DEFAULT_SINK
    records = _read(sink, args.path, section.get("path"), Path.cwd(), uri, experiment_id, model_id)
    selected, others = agg.select(records, window, model_id)
    sanitizer = Sanitizer.from_config(config)
    metrics = agg.traffic_metrics(selected)
    head = [f"monitor: {args.name} v{version.version} (@{args.alias}, {model_id or 'no LoggedModel id'}), "
            f"{sink} sink{' ' + str(_where(sink, args.path, section.get('path'))) if sink == 'local' else ''}, "
            f"window {window.describe()}: {len(selected)} request(s)"
            + (f"; {others} record(s) of other models ignored" if others else "")]
    if not selected:
        head.append("no traffic in the window: SLO gates on rates and latencies are skipped, not passed")
    notes: list[str] = []
    if args.feedback:
        fb = agg.feedback_metrics(selected, agg.read_feedback(Path(args.feedback)), sanitizer)
        metrics.update(fb.metrics)
        notes.append(f"feedback: {fb.labels} label(s), {fb.joined} joined to requests in the window"
                     + (f", {len(fb.unknown_ids)} unknown request id(s) (not in the window): "
                        + ", ".join(fb.unknown_ids[:5]) + (" ..." if len(fb.unknown_ids) > 5 else "")
                        if fb.unknown_ids else ""))
    eval_results = _eval_results(client, eval_run_id) if selected else []
    d = agg.drift(selected, eval_results)
    metrics.update(d.metrics)
    notes += [f"drift: {ln}" for ln in d.lines]
    gates = check_slo(slo, metrics, traffic=bool(selected))
    record = _record(version, metrics, gates, eval_run_id)

    lines = head + [ln.text for ln in summary_lines(record)] + notes
    alert = alert_line(args.name, str(version.version), args.alias, gates)
    run_id = None
    if not args.no_log:
        run_id = _log_run(client, experiment_id, args, version, model_id, window, metrics, gates, sink, eval_run_id,
                          lines, alert)
    return Report(metrics, tuple(gates), tuple(lines), alert, run_id, experiment_id)


def model_id_of(version: Any) -> str | None:
    """The LoggedModel behind a version: its model_id, or the `models:/m-...` source (the sqlite registry)."""
    mid = getattr(version, "model_id", None)
    if mid:
        return str(mid)
    source = str(getattr(version, "source", "") or "")
    if source.startswith("models:/m-"):
        return source[len("models:/"):].split("/")[0]
    return None


def check_slo(slo: Mapping[str, Any], metrics: Mapping[str, float], *, traffic: bool) -> list[Any]:
    """`monitor.slo` by the gate grammar; without traffic, gates on anything but a count are skipped."""
    for metric, expr in slo.items():
        why = slo_problem(str(metric), expr)
        if why:
            raise MonitorError(f"monitor.slo.{metric}: {why}")
    gates = evaluate_gates(slo, metrics)
    if traffic:
        return gates
    return [Gate(g.metric, g.expression, g.value, False, "skipped: no traffic in the window", skipped=True)
            if skip_without_traffic(g.metric) else g for g in gates]


def alert_line(name: str, version: str, alias: str, gates: Sequence[Any]) -> str | None:
    """One line a pager can carry: every breached SLO with its value and limit."""
    bad = failing(gates)
    if not bad:
        return None
    parts = [f"{g.metric}={fmt(g.value)} (slo {g.expression.strip()}{', ' + g.reason if g.reason else ''})" for g in bad]
    return f"ALERT {name} v{version}@{alias}: SLO breached: " + "; ".join(parts)


def _where(sink: str, path_arg: str | None, configured: str | None) -> Path:
    """The local sink file monitor reads (printed, so a wrong folder is obvious)."""
    return Path(path_arg).expanduser().resolve() if path_arg else local_path(configured, Path.cwd())


def _read(sink: str, path_arg: str | None, configured: str | None, base: Path, uri: str | None,
          experiment_id: str | None, model_id: str | None) -> list[dict[str, Any]]:
    """Local: --path, else GENAI_MONITOR_PATH, else monitor.path or the default, relative to the current folder (the
    serving process writes relative to its own: run monitor from there). MLflow: the traces of the LoggedModel."""
    if sink == "local":
        return read_local(Path(path_arg).expanduser().resolve() if path_arg else local_path(configured, base))
    if not model_id or not experiment_id:
        raise MonitorError("the mlflow sink needs the version's LoggedModel id and its eval run's experiment")

    try:
        with use_tracking_uri(uri):
            return read_traces([experiment_id], model_id)
    except Exception as exc:  # noqa: BLE001 - the tracking store: one clear line
        raise SinkError(f"cannot read traces of {model_id} from {uri or 'the default store'}: {exc}") from None


def _experiment_of(client: Any, run_id: str | None) -> str | None:
    if not run_id:
        return None
    try:
        return str(client.get_run(run_id).info.experiment_id)
    except Exception:  # noqa: BLE001
        return None


def _eval_results(client: Any, run_id: str | None) -> list[dict[str, Any]]:
    """The eval run's per-case results (for the drift reference); none when they cannot be fetched."""
    if not run_id:
        return []
    try:
        found = resolve(f"runs:/{run_id}", uri=None, client=client, with_results=True)
    except Exception:  # noqa: BLE001 - no reference to compare with: drift is not reported
        return []
    return [r.to_dict() for r in found.record.results]


def _record(version: Any, metrics: Mapping[str, float], gates: Sequence[Any], eval_run_id: str | None) -> Any:
    """A RunRecord the eval's terminal table renders (status complete: a window is not a partial run)."""
    tags = version.tags or {}
    units = {m: METRICS.get(m).unit for m in metrics if m in METRICS}
    return RunRecord(schema_version=0, status="complete", started_at="", ended_at="",
                     provenance=Provenance(env_lock_hash=tags.get("env.lock_hash") or "-", env_drift=0,
                                           git_commit=tags.get("git_commit", "unknown")),
                     metrics=dict(metrics), metric_units=units, gates=tuple(gates))


def _log_run(client: Any, experiment_id: str | None, args: argparse.Namespace, version: Any, model_id: str | None,
             window: Any, metrics: Mapping[str, float], gates: Sequence[Any], sink: str, eval_run_id: str | None,
             lines: Sequence[str], alert: str | None) -> str:
    """The monitoring run: the metrics under the eval's names, tags linking it to the version, the table."""
    from mlflow.entities import Metric, RunTag

    now_ms = int(time.time() * 1000)
    tags = {names.TAG_KIND: "monitor", TAG_MODEL_NAME: args.name, TAG_MODEL_VERSION: str(version.version),
            TAG_MODEL_ID: model_id or "", TAG_ALIAS: args.alias, TAG_WINDOW: window.describe(), TAG_SINK: sink,
            TAG_SLO_PASSED: str(gates_verdict(gates)).lower(), names.TAG_EVAL_RUN_ID: eval_run_id or "",
            "mlflow.runName": f"monitor {args.name} v{version.version}@{args.alias}"}
    if window.start is not None:
        tags[TAG_WINDOW_START] = iso(window.start)
    if window.end is not None:
        tags[TAG_WINDOW_END] = iso(window.end)
    for g in gates:
        verdict = "skipped" if g.skipped else ("pass" if g.passed else "FAIL")
        value = "n/a" if g.value is None else f"{g.value:.6g}"
        tags[SLO_TAG_PREFIX + g.metric] = f"{verdict} {value} {g.expression.strip()}"
    with quiet():
        run = client.create_run(experiment_id or "0", tags={**tags, **owner_tags()})  # RUNNING: who logs it
        run_id = run.info.run_id
        client.log_batch(run_id, metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()],
                         tags=[RunTag(k, v) for k, v in tags.items() if k == "mlflow.runName"])
        client.log_text(run_id, "\n".join([*lines, *([alert] if alert else [])]) + "\n", "monitor.txt")
        client.set_terminated(run_id, "FAILED" if alert else "FINISHED")
    return str(run_id)
