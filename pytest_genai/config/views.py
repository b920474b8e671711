"""Saved views, parsed: `views:` in the config names a filter written in canonical names (`em >= 0.6 and
latency_p95_ms <= 1200`). Each is checked at config load (unknown name -> did-you-mean) and translated once to
MLflow's run-search grammar (`metrics.em >= 0.6 and ...`). tracking/views.py stores them on the experiment and
searches runs with them; `pytest-genai runs --view NAME` (runs_cmd.py) lists those runs.

Light at import (no MLflow): the config validation parses views on every load."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping, Sequence

from pytest_genai import names
from pytest_genai.compare.names import KINDS, stat_name
from pytest_genai.config.errors import Problem
from pytest_genai.config.schema import schema
from pytest_genai.config.suggest import suggest_key
from pytest_genai.config.yaml_lines import line_of
from pytest_genai.metrics.registry import METRICS

TAG_VIEW_PREFIX = names.TAG_VIEW_PREFIX  # experiment tag genai.view.<name>
VIEW_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # the schema's propertyNames pattern
OPERATORS = (">=", "<=", "!=", "=", ">", "<")
TEXT_OPERATORS = ("=", "!=")  # MLflow compares tags and params as text: equality only
MCNEMAR_OF = ("em", "pass")  # compare/comparison.py: the flips McNemar's test is run on
HEADLINE = ("em", "f1", "latency_p95_ms", "cost_per_question_usd")  # table columns after the view's own metrics
MAX_EXPRESSION_CHARS = 5000  # MLflow's limit on an experiment tag value
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
        last = name.rsplit(".", 1)[-1].lower().replace("-", "_")
        for typed in (last, last.replace("_", "")):  # `rag.topK`: the synonym is the last segment
            if typed in names.SYNONYMS:
                return names.SYNONYMS[typed]
        every = [*self.metrics, *sorted(self.stats), *self.tags, *self.params]
        return suggest_key(name, every, every)


def vocabulary() -> Vocabulary:
    """Built on each call: a conftest may register metrics after this module is imported."""
    metrics = METRICS.names()
    stats = {stat_name(m, k) for m in metrics for k in KINDS if k != "mcnemar_p"}
    stats |= {stat_name(m, "mcnemar_p") for m in MCNEMAR_OF}
    return Vocabulary(metrics, frozenset(stats), run_tags(), config_keys(metrics))


def run_tags() -> tuple[str, ...]:
    """Tags a pytest-genai run carries (names.py, a monitoring run's included, and tracking/tags.py's literals)."""
    not_on_runs = {names.TAG_EVAL_RUN_ID, names.TAG_BUNDLE_FORMAT, names.TAG_PACKAGED_BY, names.TAG_ALIAS_HISTORY}
    out = [v for k, v in vars(names).items() if k.startswith("TAG_") and isinstance(v, str)
           and not v.endswith(".") and v not in not_on_runs]
    out += ["safety.redact", "genai.plan", "genai.concurrency", "genai.batch_size"]  # tracking/tags.py literals
    return tuple(dict.fromkeys(out))


def config_keys(metrics: Sequence[str]) -> tuple[str, ...]:
    """Every dotted config key a run logs as a param (the schema's leaves, `gates.<metric>`, `monitor.slo.<metric>`),
    except the views themselves."""
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
