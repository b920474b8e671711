"""`pytest-genai runs [--view NAME]`: the runs a saved view selects (config/views.py parses it, tracking/views.py
stores it and searches), as a table, with the MLflow UI link carrying the same filter."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from pytest_genai import names
from pytest_genai.config import ConfigError, load_config
from pytest_genai.config.suggest import suggest_name
from pytest_genai.config.views import HEADLINE, View, ViewError, Vocabulary, config_views, parse_view, vocabulary
from pytest_genai.registries import load_conftest
from pytest_genai.report.terminal import fmt
from pytest_genai.run_folder import RESULTS_FILE, is_run_folder
from pytest_genai.runlog import INTERRUPTED, RunLogError, read_run
from pytest_genai.sanitize import Sanitizer
from pytest_genai.tracking import mlflow_client
from pytest_genai.tracking.mlflow_client import resolve_uri
from pytest_genai.tracking.owner import settle
from pytest_genai.tracking.views import search, store_views, stored_views

DEFAULT_MAX = {True: 50, False: 10}  # --max: with a view, without one


class RunsError(Exception):
    """Bad input for `pytest-genai runs` (exit 2)."""


@dataclass(frozen=True)
class UiLink:
    path: str  # the UI's route: #/experiments/<id>/runs?searchFilter=...
    url: str | None  # a tracking server serves its UI: the full URL
    command: str | None  # a local store has no UI until `mlflow ui` serves it

    def __str__(self) -> str:
        if self.url:
            return self.url
        if self.command:
            needs = "" if has_mlflow_ui() else "  (the UI is in full mlflow: pip install 'pytest-genai[server]')"
            return f"{self.command}  then open http://127.0.0.1:5000/{self.path}{needs}"
        return self.path


def has_mlflow_ui() -> bool:
    """Full mlflow (its server and UI) is installed, not only mlflow-skinny (the core's)."""
    try:
        metadata.distribution("mlflow")
    except metadata.PackageNotFoundError:
        return False
    return True


def ui_link(tracking_uri: str | None, experiment_id: str, view: View | None) -> UiLink:
    """The MLflow 3.17 runs list of the experiment with the view's filter in the search box (its route
    `/experiments/:experimentId/runs` and query parameter `searchFilter`, read from the UI's code)."""
    path = f"#/experiments/{quote(str(experiment_id), safe='')}/runs"
    if view is not None and view.mlflow_filter:
        path += "?searchFilter=" + quote(view.mlflow_filter, safe="")
    uri = tracking_uri or "sqlite:///mlflow.db"
    if uri.startswith(("http://", "https://")):
        return UiLink(path, f"{_without_userinfo(uri).rstrip('/')}/{path}", None)
    if uri.startswith(("sqlite:", "postgresql", "mysql", "mssql", "file:")) or "://" not in uri:
        return UiLink(path, None, f"mlflow ui --backend-store-uri {shlex.quote(uri)}")
    return UiLink(path, None, None)  # databricks and other hosted stores: their own UI


def _without_userinfo(url: str) -> str:
    """A link is shown and pasted: never with the tracking URI's `user:password@` (the browser asks for them)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("runs", help="list runs by a saved view (views: in the config): id, name, key metrics, "
                                           "git commit, and the MLflow UI link with the same filter")
    p.add_argument("--view", default=None, metavar="NAME", help="a view of the config (or one stored on the "
                                                                "experiment); without it: the views and the latest runs")
    p.add_argument("--config", default=None, help="the config with views: and tracking: (default genai.yaml when present)")
    p.add_argument("--tracking-uri", default=None,
                   help="default: the config's tracking.uri, then MLFLOW_TRACKING_URI, then MLflow's default store")
    p.add_argument("--experiment", default=None, help="default: the config's tracking.experiment (pytest-genai)")
    p.add_argument("--max", type=int, default=None, metavar="N",
                   help=f"runs listed, newest first (default {DEFAULT_MAX[True]} with --view, {DEFAULT_MAX[False]} without)")
    return p


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    """Exit 0: runs listed; 1: no run matches; 2: bad input (config, view, store, experiment)."""
    clean = Sanitizer(False, None, ())  # URL credentials out of a store's error message
    try:
        listing = build_listing(args)
    except (RunsError, ViewError, ConfigError, OSError) as exc:
        print(clean.text(f"pytest-genai runs: {exc}"), file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ != "MlflowException":
            raise
        why = str(exc).splitlines()[0] if str(exc) else repr(exc)
        print(clean.text(f"pytest-genai runs: the MLflow store refused: {why}"), file=sys.stderr)
        return 2
    for line in listing.lines:
        echo(line)
    return 0 if listing.runs else 1


@dataclass(frozen=True)
class Listing:
    lines: tuple[str, ...]
    runs: tuple[Any, ...]
    view: View | None
    link: UiLink


def build_listing(args: argparse.Namespace) -> Listing:
    config = _load(args.config)
    clean = (Sanitizer.from_config(config) if config is not None else Sanitizer(False, None, ())).secrets_only()
    if args.tracking_uri:
        uri = resolve_uri(args.tracking_uri, Path.cwd())
    elif config is not None and config.get("tracking.uri"):
        uri = resolve_uri(str(config.get("tracking.uri")), config.base_dir)
    else:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    experiment = args.experiment or (config.get("tracking.experiment") if config is not None else None) or "pytest-genai"
    if args.max is not None and args.max < 1:
        raise RunsError(f"--max must be at least 1 (got {args.max})")
    local = local_lines(config)
    if config is not None and config.get("tracking.enabled") is False and not args.tracking_uri:
        lines = local or [f"no run folder in {config.get('tracking.results_dir')} (tracking.enabled is false: no MLflow runs)"]
        return Listing(tuple(clean.text(ln) or "" for ln in lines), tuple(lines[1:]) if local else (), None,
                       UiLink("", None, None))
    _check_store_exists(uri)
    vocab = vocabulary()
    own = config_views(config, vocab) if config is not None else {}
    with mlflow_client.quiet(), mlflow_client.bounded(0, 30):  # an unreachable server answers in seconds
        client = mlflow_client.client(uri)
        exp_id = _experiment_id(client, experiment, uri)
        note = None
        if own:
            try:
                store_views(client, exp_id, {v.name: clean.text(v.expression) or "" for v in own.values()})
            except Exception as exc:  # a read-only user of a shared server still lists runs
                if type(exc).__name__ != "MlflowException":
                    raise
                why = str(exc).splitlines()[0] if str(exc) else repr(exc)
                note = f"note: the views were not stored on the experiment: {why}"
        on_experiment = stored_views(client, exp_id)
        view = _choose(args.view, own, on_experiment, vocab, config)
        limit = args.max or DEFAULT_MAX[view is not None]
        found = search(client, [exp_id], view, limit)
        unfinished = settle(client, found.runs)  # a run its killed session left RUNNING reads (and is) interrupted
        if any(u.marked for u in unfinished.values()):
            found = replace(found, runs=tuple(client.get_run(r.info.run_id) if unfinished.get(r.info.run_id)
                                              and unfinished[r.info.run_id].marked else r for r in found.runs))
    link = ui_link(uri, exp_id, view)
    where = f"experiment {experiment!r} (id {exp_id}), tracking uri {uri or 'MLflow default (sqlite:///mlflow.db)'}"
    lines: list[str] = []
    if view is None:
        lines += _views_lines(own, on_experiment, config)
        lines.append(f"latest {len(found.runs)} run(s) of {where}:")
    else:
        lines += [f"view {view.name}: {view.expression}", f"mlflow filter: {view.mlflow_filter}",
                  f"{len(found.runs)} matching run(s) in {where}, newest first" + (":" if found.runs else "")]
    lines += run_table(found.runs, view.metrics if view else ())
    lines += [f"note: {u.line()}" for u in unfinished.values()]
    if view is not None and not found.runs:
        lines.append("no run matches this view")
    if found.left_out and view is not None:
        lines.append(f"left out: {found.left_out} monitoring/shard run(s) the filter also matches (the MLflow UI lists "
                     f"them too; a view with a genai.kind clause lists them here)")
    elif found.left_out:
        lines.append(f"left out: {found.left_out} monitoring/shard run(s) (a view with a genai.kind clause lists them)")
    lines += local
    lines.append(f"MLflow UI: {link}")
    if note:
        lines.append(note)
    return Listing(tuple(clean.text(ln) or "" for ln in lines), found.runs, view, link)


def local_lines(config: Any, limit: int = 10) -> list[str]:
    """The config's run folders that are not MLflow runs, newest first: a session killed before its end (reads
    `interrupted`), one still running, one whose logging failed (`pytest-genai upload` logs it)."""
    root = config.resolve_path("tracking.results_dir") if config is not None else None
    if root is None or not root.is_dir():
        return []
    rows, more = [], 0
    for folder in sorted((d for d in root.iterdir() if is_run_folder(d)), key=lambda d: d.name, reverse=True):
        try:
            record = read_run(folder, with_results=False)
        except RunLogError:
            continue
        if record.tracking.run_id:
            continue
        if len(rows) == limit:
            more += 1
            continue
        done = record.metrics.get("cases_evaluated")
        if done is None:  # a journal's record: its finished cases are the lines on disk
            done = sum(1 for ln in (folder / RESULTS_FILE).open("rb") if ln.strip()) if (folder / RESULTS_FILE).is_file() else 0
        rows.append([folder.name, record.status, f"{fmt(done)} of {fmt(record.metrics.get('cases_total'))} cases",
                     _minute(record.started_at)])
    if not rows:
        return []
    return [f"run folders in {root} not logged to MLflow (`pytest-genai show FOLDER`; `pytest-genai upload FOLDER` "
            "logs a finished one):", *("  " + ln for ln in table([["run folder", "status", "cases", "started (UTC)"],
                                                                   *rows]))] \
        + ([f"  ... and {more} older one(s)"] if more else [])


def _minute(stamp: str) -> str:
    """A record's ISO 8601 start (UTC) as the MLflow table shows a run's: to the minute."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    except (AttributeError, TypeError, ValueError):
        return str(stamp)


def _load(config_arg: str | None) -> Any:
    path = Path(config_arg) if config_arg else Path("genai.yaml")
    if config_arg is None and not path.is_file():
        return None  # no config here: the experiment's stored views and runs still list
    load_conftest(path.resolve().parent)  # its metrics, so views on them validate
    return load_config(path)


def _check_store_exists(uri: str | None) -> None:
    """Listing must not create (and migrate) an empty sqlite store where none was logged."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.is_file():
            raise RunsError(f"no MLflow store at {db}: nothing has been logged there (set tracking.uri in the config "
                            f"or pass --tracking-uri)")


def _experiment_id(client: Any, name: str, uri: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    known = [e.name for e in client.search_experiments(max_results=1000)]
    hint = suggest_name(name, known)
    tip = f" — did you mean {hint!r}?" if hint else ""
    raise RunsError(f"no experiment {name!r} in {uri or 'the default store'}{tip} (experiments: "
                    f"{', '.join(known) or 'none'}; --experiment or tracking.experiment)")


def _choose(name: str | None, own: Mapping[str, View], on_experiment: Mapping[str, str], vocab: Vocabulary,
            config: Any) -> View | None:
    if name is None:
        return None
    if name in own:
        return own[name]
    if name in on_experiment:
        try:
            return parse_view(name, on_experiment[name], vocab)
        except ViewError as exc:
            raise RunsError(f"view {name!r} stored on the experiment ({on_experiment[name]!r}) does not parse "
                            f"here: {exc}") from None
    known = sorted({*own, *on_experiment})
    if not known:
        where = f"{config.path}" if config is not None else "genai.yaml"
        raise RunsError(f"unknown view {name!r}: no views are defined (add a views: section to {where}, "
                        f"like  views: {{release: 'em >= 0.6 and latency_p95_ms <= 1200'}})")
    hint = suggest_name(name, known)
    tip = f" — did you mean {hint!r}?" if hint else ""
    raise RunsError(f"unknown view {name!r}{tip} (views: {', '.join(known)})")


def _views_lines(own: Mapping[str, View], on_experiment: Mapping[str, str], config: Any) -> list[str]:
    if not own and not on_experiment:
        return ["views: none (add a views: section to the config, like  release: 'em >= 0.6 and latency_p95_ms <= 1200')"]
    out = [f"views ({config.path.name}; stored on the experiment):" if own else "views (stored on the experiment):"]
    out += [f"  {v.name}: {v.expression}" for v in own.values()]
    out += [f"  {n}: {e}  (on the experiment only)" for n, e in on_experiment.items() if n not in own]
    return out


def run_status(run: Any) -> str:
    """A run's status as the records say it (`genai.status`: complete, partial, interrupted, failed, stopped, and
    pending for a shard group's parent waiting for its merge), `running` while it is being logged, `interrupted`
    for one terminated KILLED; MLflow's own status for runs that carry no genai.status (other tools)."""
    tags, status = run.data.tags, str(run.info.status)
    if status == "RUNNING":
        return "pending" if tags.get(names.TAG_STATUS) == "pending" else "running"
    if status == "KILLED":
        return INTERRUPTED
    return tags.get(names.TAG_STATUS) or status.lower()


def run_table(runs: Sequence[Any], view_metrics: Sequence[str] = ()) -> list[str]:
    """run id, run name, status, the view's metrics then the headline ones any run logged, gates, git commit,
    start."""
    if not runs:
        return []
    logged = {k for r in runs for k in r.data.metrics}
    metrics = list(dict.fromkeys([*view_metrics, *(m for m in HEADLINE if m in logged)]))
    rows = [["run id", "run name", "status", *metrics, "gates", "git", "started (UTC)"]]
    for r in runs:
        tags = r.data.tags
        gates = {"true": "pass", "false": "FAIL"}.get(tags.get(names.TAG_GATES_PASSED, ""), "-")
        commit = tags.get(names.TAG_GIT_COMMIT) or tags.get(names.TAG_MLFLOW_GIT_COMMIT) or "-"
        start = (datetime.fromtimestamp(r.info.start_time / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
                 if r.info.start_time else "-")
        rows.append([r.info.run_id, r.info.run_name or tags.get("mlflow.runName") or "-", run_status(r),
                     *(fmt(r.data.metrics.get(m)) for m in metrics), gates, commit[:12], start])
    return table(rows)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows (the first: the header) as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
