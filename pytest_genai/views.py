"""Saved views: `views:` in the config names a filter written in canonical names (`em >= 0.6 and
latency_p95_ms <= 1200`). Each is checked at config load (unknown name -> did-you-mean), translated once to
MLflow's run-search grammar (`metrics.em >= 0.6 and ...`), stored on the experiment as a tag, and listed by
`pytest-genai runs --view NAME` with an MLflow UI link carrying the same filter.

Light at import (no MLflow): the config validation parses views on every load."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote

from pytest_genai import names


TAG_VIEW_PREFIX = names.TAG_VIEW_PREFIX  # experiment tag genai.view.<name>
VIEW_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # the schema's propertyNames pattern
OPERATORS = (">=", "<=", "!=", "=", ">", "<")
TEXT_OPERATORS = ("=", "!=")  # MLflow compares tags and params as text: equality only
MCNEMAR_OF = ("em", "pass")  # compare/comparison.py: the flips McNemar's test is run on
HEADLINE = ("em", "f1", "latency_p95_ms", "cost_per_question_usd")  # table columns after the view's own metrics
MAX_EXPRESSION_CHARS = 5000  # MLflow's limit on an experiment tag value
LISTED_KINDS = (None, "eval")  # genai.kind of the runs listed unless a view names genai.kind itself
DEFAULT_MAX = {True: 50, False: 10}  # --max: with a view, without one
_GIT_TAGS = ("git_commit", "mlflow.source.git.commit")
_SHORT_SHA = re.compile(r"^[0-9a-f]{4,39}$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BARE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")
_TOKEN = re.compile(r"""\s*(?:(?P<str>'[^']*'|"[^"]*")|(?P<op>>=|<=|!=|==|=>|=<|<>|=|>|<)|(?P<paren>[()])"""
                    r"""|(?P<word>`[^`]*`|[^\s'"<>=!()`]+))""")
_MISTYPED_OPS = {"=>": ">=", "=<": "<=", "<>": "!="}
_MLFLOW_PREFIXES = ("metrics.", "tags.", "params.", "attributes.")


class ViewError(ValueError):
    """A view that cannot be parsed or translated; the message says which part and how to fix it."""


class RunsError(Exception):
    """Bad input for `pytest-genai runs` (exit 2)."""


@dataclass(frozen=True)
class Clause:
    kind: str  # "metric", "tag" or "param"
    name: str  # canonical
    op: str  # one of OPERATORS, or LIKE for a short git commit
    value: str  # a number's text (metrics) or the compared text (tags, params)

    def mlflow(self) -> str:
        if self.kind == "metric":
            key = self.name if _IDENT.match(self.name) else f"`{self.name}`"
            return f"metrics.{key} {self.op} {self.value}"
        return f"{self.kind}s.`{self.name}` {self.op} '{self.value}'"


@dataclass(frozen=True)
class View:
    name: str
    expression: str  # as written in the config (what is stored on the experiment)
    mlflow_filter: str  # MLflow's search grammar ("" for every run)
    clauses: tuple[Clause, ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics the view compares, in its order (the first columns of its table)."""
        return tuple(dict.fromkeys(c.name for c in self.clauses if c.kind == "metric"))

    @property
    def selects_kind(self) -> bool:
        """A clause on genai.kind: the view chooses the kinds of run (monitoring runs included) itself."""
        return any(c.kind == "tag" and c.name == names.TAG_KIND for c in self.clauses)


# ---------------------------------------------------------------- the names a view may use


@dataclass(frozen=True)
class Vocabulary:
    """What a clause may name: registered metrics, their comparison statistics, run tags, config keys."""

    metrics: tuple[str, ...]
    stats: frozenset[str]
    tags: tuple[str, ...]
    params: tuple[str, ...]

    def kind_of(self, name: str) -> str | None:
        if name in self.metrics or name in self.stats:
            return "metric"
        if name in self.tags:
            return "tag"
        if name in self.params:
            return "param"
        return None

    def suggest(self, name: str) -> str | None:
        """Synonyms (`top_k` -> rag.retriever_k), spelling (`latency_p95` -> latency_p95_ms), wrong section."""
        from pytest_genai.config.suggest import suggest_key

        last = name.rsplit(".", 1)[-1].lower().replace("-", "_")
        for typed in (last, last.replace("_", "")):  # `rag.topK`: the synonym is the last segment
            if typed in names.SYNONYMS:
                return names.SYNONYMS[typed]
        every = [*self.metrics, *sorted(self.stats), *self.tags, *self.params]
        return suggest_key(name, every, every)


def vocabulary() -> Vocabulary:
    """Built on each call: a conftest may register metrics after this module is imported."""
    import pytest_genai.metrics.builtin  # noqa: F401 - registers the built-ins
    from pytest_genai.compare.names import KINDS, stat_name
    from pytest_genai.metrics.registry import METRICS
    from pytest_genai.monitor.metrics import register as register_monitor_metrics

    register_monitor_metrics()
    metrics = METRICS.names()
    stats = {stat_name(m, k) for m in metrics for k in KINDS if k != "mcnemar_p"}
    stats |= {stat_name(m, "mcnemar_p") for m in MCNEMAR_OF}
    return Vocabulary(metrics, frozenset(stats), run_tags(), config_keys(metrics))


def run_tags() -> tuple[str, ...]:
    """Tags a pytest-genai run carries (names.py, tracking/tags.py, and a monitoring run's own)."""
    from pytest_genai.monitor import cli as monitor_cli

    not_on_runs = {names.TAG_EVAL_RUN_ID, names.TAG_BUNDLE_FORMAT, names.TAG_PACKAGED_BY, names.TAG_ALIAS_HISTORY}
    out = [v for k, v in vars(names).items() if k.startswith("TAG_") and isinstance(v, str)
           and not v.endswith(".") and v not in not_on_runs]
    out += ["safety.redact", "genai.plan", "genai.concurrency", "genai.batch_size"]  # tracking/tags.py literals
    out += [v for k, v in vars(monitor_cli).items() if k.startswith("TAG_") and isinstance(v, str)]
    return tuple(dict.fromkeys(out))


def config_keys(metrics: Sequence[str]) -> tuple[str, ...]:
    """Every dotted config key a run logs as a param (the schema's leaves, `gates.<metric>`, `monitor.slo.<metric>`),
    except the views themselves."""
    from pytest_genai.config.validate import schema

    out: list[str] = []
    _leaves(schema(), "", out)
    out += [f"gates.{m}" for m in metrics] + [f"monitor.slo.{m}" for m in metrics]
    return tuple(k for k in dict.fromkeys(out) if not k.startswith("views"))


def _leaves(node: Mapping[str, Any], prefix: str, out: list[str]) -> None:
    for key, sub in node.get("properties", {}).items():
        if not isinstance(sub, dict):
            continue
        path = f"{prefix}.{key}" if prefix else key
        types = sub.get("type") if isinstance(sub.get("type"), list) else [sub.get("type")]
        if types == ["object"]:
            _leaves(sub, path, out)  # a map (gates, monitor.slo, views) has no leaves of its own: added by name
            continue
        out.append(path)  # a scalar, or the string form of `index: flat | {type: hnsw, ...}`, `judge: f1 | {...}`
        if "object" in types:
            _leaves(sub, path, out)
        for branch in sub.get("oneOf", []):
            if isinstance(branch, dict) and branch.get("type") == "object":
                _leaves(branch, path, out)


# ---------------------------------------------------------------- parsing and translation


def parse_view(name: str, expression: str, vocab: Vocabulary | None = None) -> View:
    """`release`, `em >= 0.6 and latency_p95_ms <= 1200` -> a View with its MLflow filter; ViewError if not."""
    if not VIEW_NAME.match(name):
        raise ViewError(f"view name {name!r} may hold only letters, digits, '_', '.' and '-'")
    if not isinstance(expression, str):
        raise ViewError(f"a view is a filter string like 'em >= 0.6 and latency_p95_ms <= 1200' (got {expression!r})")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ViewError(f"the filter has {len(expression)} characters; MLflow stores at most {MAX_EXPRESSION_CHARS}")
    clauses = parse_clauses(expression, vocab)
    return View(name, expression, render(clauses), clauses)


def to_mlflow_filter(expression: str, vocab: Vocabulary | None = None) -> str:
    """The MLflow search-grammar filter of a view expression."""
    return render(parse_clauses(expression, vocab))


def render(clauses: Iterable[Clause]) -> str:
    return " and ".join(c.mlflow() for c in clauses)


def parse_clauses(expression: str, vocab: Vocabulary | None = None) -> tuple[Clause, ...]:
    vocab = vocabulary() if vocab is None else vocab
    tokens = _tokens(expression)
    if not tokens:
        raise ViewError("a view needs at least one clause, like 'em >= 0.6'")
    out: list[Clause] = []
    i = 0
    while True:
        if i + 3 > len(tokens):
            got = " ".join(t for _, t in tokens[i:]) or "the end"
            raise ViewError(f"expected a clause 'NAME OP VALUE' (like 'em >= 0.6'), got {got!r}")
        (nk, name), (ok, op), (vk, value) = tokens[i:i + 3]
        if nk != "word" or name.lower() in ("and", "or", "not"):
            raise ViewError(f"expected a metric, tag or config key, got {name!r}")
        if ok != "op":
            raise ViewError(f"expected one of {', '.join(OPERATORS)} after {name!r}, got {op!r}")
        if op == "==":  # the gates' spelling of equality: MLflow's is '='
            op = "="
        if op in _MISTYPED_OPS:
            raise ViewError(f"{name} {op} ...: write '{_MISTYPED_OPS[op]}' (MLflow's operator), not '{op}'")
        if vk not in ("word", "str"):
            raise ViewError(f"expected a value after '{name} {op}', got {value!r}")
        out.append(_clause(name, op, value, vk == "str", vocab))
        i += 3
        if i == len(tokens):
            return tuple(out)
        kind, joiner = tokens[i]
        if kind == "word" and joiner.lower() in ("or", "||"):
            raise ViewError("'or' is not supported: MLflow's run search has no OR (clauses are joined by 'and'); "
                            "save one view per alternative")
        if kind != "word" or joiner.lower() not in ("and", "&&"):
            raise ViewError(f"expected 'and' after '{name} {op} {value}', got {joiner!r}")
        if joiner == "&&":
            raise ViewError("write 'and' to join clauses, not '&&'")
        i += 1


def _tokens(expression: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos, text = 0, expression.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            rest = text[pos:].lstrip()
            if rest[:1] in ("'", '"', "`"):
                raise ViewError(f"a quote is not closed: {rest[:30]!r}")
            raise ViewError(f"cannot read {rest[:30]!r}")
        kind = m.lastgroup or ""
        if kind == "paren":
            raise ViewError("no parentheses: MLflow's run search has no grouping (and no OR); join clauses with 'and'")
        tokens_text = m.group(kind)
        out.append((kind, tokens_text))
        pos = m.end()
    return out


def _clause(raw_name: str, op: str, raw_value: str, quoted: bool, vocab: Vocabulary) -> Clause:
    name = raw_name[1:-1] if raw_name.startswith("`") else raw_name
    kind = vocab.kind_of(name)
    if kind is None:
        raise ViewError(_unknown_name(name, vocab))
    value = raw_value[1:-1] if quoted else raw_value
    if kind == "metric":
        if quoted or not _NUMBER.match(value):
            raise ViewError(f"'{name}' is a metric: compare it with a number, like '{name} {op} 0.5' (got {raw_value})")
        return Clause("metric", name, op, _plain_number(value))
    what = "a run tag" if kind == "tag" else "a config key (an MLflow param)"
    if op not in TEXT_OPERATORS:
        raise ViewError(f"'{name}' is {what}: MLflow compares it as text, with = or != only (got '{op}')")
    if not quoted and not _BARE_VALUE.match(value):
        raise ViewError(f"quote the value of '{name}': {name} {op} '{value}'")
    if any(c in value for c in "'\"`\\"):
        raise ViewError(f"the value of '{name}' cannot hold quotes, backticks or backslashes (MLflow's grammar)")
    if not quoted and value.lower() in ("true", "false"):
        value = value.lower()  # booleans are logged lower-case (tags: 'true'; params: JSON)
    if kind == "tag" and name in _GIT_TAGS and _SHORT_SHA.match(value):
        if op == "!=":
            raise ViewError(f"'{name} != {value}': a short commit can only be matched with '='; give all 40 hex digits")
        return Clause("tag", name, "LIKE", f"{value}%")
    return Clause(kind, name, op, value)


def _plain_number(text: str) -> str:
    """MLflow's parser reads plain decimals; `1e-3` is written out as 0.001."""
    try:
        d = Decimal(text)
    except InvalidOperation:  # pragma: no cover - _NUMBER matched
        raise ViewError(f"{text!r} is not a number") from None
    out = format(d, "f")
    return out[1:] if out.startswith("+") else out


def _unknown_name(name: str, vocab: Vocabulary) -> str:
    for prefix in _MLFLOW_PREFIXES:
        if name.startswith(prefix) and vocab.kind_of(name[len(prefix):]):
            return (f"write '{name[len(prefix):]}', not '{name}': views use canonical names and "
                    f"the {prefix} prefix is added for MLflow")
    hint = vocab.suggest(name)
    tip = f" — did you mean '{hint}'?" if hint else ""
    return (f"unknown name '{name}'{tip} (a view compares registered metrics such as {', '.join(HEADLINE)}, their "
            f"comparison statistics like f1_ci_low or f1_delta, run tags such as git_commit, prompt.version, "
            f"genai.gates_passed, or config keys such as llm.model_id)")


def view_problems(views: Any, lines: Mapping[tuple[str, ...], int]) -> list[Any]:
    """Config validation: each `views.<name>` parsed now, so a typo fails at load, not when the view is listed.
    Names and types the schema refuses are reported by the schema check."""
    from pytest_genai.config.errors import Problem
    from pytest_genai.config.yaml_lines import line_of

    if not isinstance(views, dict):
        return []
    vocab = vocabulary()
    out = []
    for name, expression in views.items():
        name = str(name)
        if not VIEW_NAME.match(name) or not isinstance(expression, str) or not expression:
            continue
        try:
            parse_view(name, expression, vocab)
        except ViewError as exc:
            out.append(Problem(f"views.{name}", str(exc), line_of(lines, ("views", name))))
    return out


def config_views(config: Any, vocab: Vocabulary | None = None) -> dict[str, View]:
    """The config's views, parsed (the config was validated at load, so they parse)."""
    vocab = vocabulary() if vocab is None else vocab
    return {str(n): parse_view(str(n), e, vocab) for n, e in (config.get("views") or {}).items()}


# ---------------------------------------------------------------- MLflow: store, read, search, link


def store_views(client: Any, experiment_id: str, views: Iterable[View] | Mapping[str, str]) -> list[str]:
    """Tag the experiment `genai.view.<name>` = expression (views, or name -> expression); only the tags that
    differ are written (a session calls this on every run). Returns the names written. Views removed from a config
    stay on the experiment (another config may log to it)."""
    pairs = list(views.items()) if isinstance(views, Mapping) else [(v.name, v.expression) for v in views]
    if not pairs:
        return []
    current = dict(client.get_experiment(experiment_id).tags or {})
    written = []
    for name, expression in pairs:
        key = TAG_VIEW_PREFIX + str(name)
        if current.get(key) != expression:
            client.set_experiment_tag(experiment_id, key, expression)
            written.append(str(name))
    return written


def store_config_views(client: Any, experiment_id: str, config: Any) -> list[str]:
    """For the MLflow logging of a session, after it found or created the experiment. `config` is a GenaiConfig or
    the resolved config as a mapping (a run folder's config.resolved.yaml); its views were validated when it was
    loaded, so they are stored as written, through the sanitizer's secrets layer (config text, not case data).
    Returns the names written."""
    from pytest_genai.sanitize import Sanitizer

    views = config.get("views") or {}
    if not isinstance(views, Mapping) or not views:
        return []
    clean = Sanitizer.from_config(config).secrets_only()
    return store_views(client, experiment_id, {str(n): clean.text(str(e)) or "" for n, e in views.items()})


def stored_views(client: Any, experiment_id: str) -> dict[str, str]:
    """name -> expression of the views stored on the experiment."""
    tags = client.get_experiment(experiment_id).tags or {}
    return {k[len(TAG_VIEW_PREFIX):]: v for k, v in sorted(tags.items()) if k.startswith(TAG_VIEW_PREFIX)}


@dataclass(frozen=True)
class Found:
    runs: tuple[Any, ...]  # mlflow.entities.Run, newest first
    left_out: int  # runs the filter matched but whose genai.kind is not listed (monitor, shard), among those read


def find_runs(client: Any, experiment_ids: Sequence[str], view: View | None, max_results: int = 50) -> list[Any]:
    """The newest `max_results` runs matching the view: eval runs (genai.kind eval, or none: runs logged before
    the tag or by other tools), monitoring and shard runs only when the view names genai.kind itself."""
    return list(search(client, experiment_ids, view, max_results).runs)


def search(client: Any, experiment_ids: Sequence[str], view: View | None, max_results: int = 50,
           page_size: int | None = None) -> Found:
    """`find_runs` with the count of what it left out; pages through MLflow until `max_results` are kept."""
    every_kind = view is not None and view.selects_kind
    page = page_size or min(1000, max(50, 2 * max_results))
    kept: list[Any] = []
    left_out = 0
    token = None
    while len(kept) < max_results:
        batch = client.search_runs(list(experiment_ids), filter_string=view.mlflow_filter if view else "",
                                   order_by=["attributes.start_time DESC"], max_results=page, page_token=token)
        for run in batch:
            if every_kind or run.data.tags.get(names.TAG_KIND) in LISTED_KINDS:
                kept.append(run)
            else:
                left_out += 1
        token = getattr(batch, "token", None)
        if not token:
            break
    return Found(tuple(kept[:max_results]), left_out)


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
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


# ---------------------------------------------------------------- the `runs` command


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
    from pytest_genai.config import ConfigError
    from pytest_genai.sanitize import Sanitizer

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
    import os

    from pytest_genai.sanitize import Sanitizer
    from pytest_genai.tracking.mlflow_store import _bounded, _client, _quiet, resolve_uri

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
    _check_store_exists(uri)
    vocab = vocabulary()
    own = config_views(config, vocab) if config is not None else {}
    with _quiet(), _bounded(0, 30):  # an unreachable server answers in seconds, not after minutes of retries
        client = _client(uri)
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
    if view is not None and not found.runs:
        lines.append("no run matches this view")
    if found.left_out and view is not None:
        lines.append(f"left out: {found.left_out} monitoring/shard run(s) the filter also matches (the MLflow UI lists "
                     f"them too; a view with a genai.kind clause lists them here)")
    elif found.left_out:
        lines.append(f"left out: {found.left_out} monitoring/shard run(s) (a view with a genai.kind clause lists them)")
    lines.append(f"MLflow UI: {link}")
    if note:
        lines.append(note)
    return Listing(tuple(clean.text(ln) or "" for ln in lines), found.runs, view, link)


def _load(config_arg: str | None) -> Any:
    from pytest_genai.cli import _load_conftest
    from pytest_genai.config import load_config

    path = Path(config_arg) if config_arg else Path("genai.yaml")
    if config_arg is None and not path.is_file():
        return None  # no config here: the experiment's stored views and runs still list
    _load_conftest(path.resolve().parent)  # its metrics, so views on them validate
    return load_config(path)


def _check_store_exists(uri: str | None) -> None:
    """Listing must not create (and migrate) an empty sqlite store where none was logged."""
    import os

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
    from pytest_genai.config.suggest import suggest_name

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
    from pytest_genai.config.suggest import suggest_name

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


def run_table(runs: Sequence[Any], view_metrics: Sequence[str] = ()) -> list[str]:
    """run id, run name, the view's metrics then the headline ones any run logged, gates, git commit, start."""
    from datetime import datetime, timezone

    from pytest_genai.report.terminal import fmt

    if not runs:
        return []
    logged = {k for r in runs for k in r.data.metrics}
    metrics = list(dict.fromkeys([*view_metrics, *(m for m in HEADLINE if m in logged)]))
    head = ["run id", "run name", *metrics, "gates", "git", "started (UTC)"]
    rows = [head]
    for r in runs:
        tags = r.data.tags
        gates = {"true": "pass", "false": "FAIL"}.get(tags.get(names.TAG_GATES_PASSED, ""), "-")
        commit = tags.get(names.TAG_GIT_COMMIT) or tags.get(names.TAG_MLFLOW_GIT_COMMIT) or "-"
        start = (datetime.fromtimestamp(r.info.start_time / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
                 if r.info.start_time else "-")
        rows.append([r.info.run_id, r.info.run_name or tags.get("mlflow.runName") or "-",
                     *(fmt(r.data.metrics.get(m)) for m in metrics), gates, commit[:12], start])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
