"""Validation against the shipped JSON Schema, with did-you-mean for unknown keys."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from pytest_genai.config.errors import Problem
from pytest_genai.config.pipeline_spec import factory_of
from pytest_genai.config.schema import all_key_paths, schema
from pytest_genai.config.slo import slo_problem
from pytest_genai.config.suggest import suggest_key, suggest_name
from pytest_genai.config.views import view_problems
from pytest_genai.config.yaml_lines import Lines, line_of
from pytest_genai.gates import FORMS, gate_problem
from pytest_genai.metrics.registry import METRICS
from pytest_genai.policy import policy_problem
from pytest_genai.registries import PROVIDERS

# Canonical sections whose features have not landed yet: named as such instead of "unknown key".
LATER_SECTIONS: dict[str, str] = {}
SECRET_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def unknown_key_problems(data: Any, lines: Lines) -> list[Problem]:
    paths = all_key_paths()
    return list(_unknown(data, schema(), (), lines, paths))


def _unknown(data: Any, node: dict[str, Any], prefix: tuple[str, ...], lines: Lines, paths: list[str]) -> Iterator[Problem]:
    if not isinstance(data, dict):
        return
    node = next((b for b in node.get("oneOf", []) if b.get("type") == "object"), node)  # `index: {type: hnsw, ...}`
    props: dict[str, Any] = node.get("properties", {})
    is_gates = prefix == ("gates",)
    for key, value in data.items():
        key = str(key)
        path = prefix + (key,)
        dotted = ".".join(path)
        if prefix == ("monitor", "slo"):  # the gate grammar on the metric registry's names (monitoring's included)

            if (why := slo_problem(key, value)) is not None:
                yield Problem(dotted, why, line_of(lines, path))
            continue
        if is_gates:
            known = gateable_metrics()
            if key not in known:
                hint = suggest_name(key, known)
                tip = f" — did you mean 'gates.{hint}'?" if hint else ""
                yield Problem(dotted, f"unknown metric '{key}'{tip} (known: {', '.join(known)})", line_of(lines, path))
            elif (why := unavailable_reason(key)) is not None:
                yield Problem(dotted, f"metric '{key}' cannot be gated yet: {why}", line_of(lines, path))
            continue
        if key in props:
            yield from _unknown(value, props[key], path, lines, paths)
        elif not prefix and key in LATER_SECTIONS:
            yield Problem(dotted, f"the '{key}' section is not supported by this version of pytest-genai ({LATER_SECTIONS[key]})", line_of(lines, path))
        elif node.get("additionalProperties") is False:
            hint = suggest_key(key, props, paths, ".".join(prefix))
            tip = f" — did you mean '{hint}'?" if hint else ""
            yield Problem(dotted, f"unknown key '{dotted}'{tip}", line_of(lines, path))


def schema_problems(data: Any, lines: Lines) -> list[Problem]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema())
    out: list[Problem] = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "additionalProperties":
            continue  # reported with a suggestion by unknown_key_problems
        path = tuple(str(p) for p in err.absolute_path)
        if path == ("views",) and err.validator == "pattern":  # propertyNames: point at the name's own line
            path += (str(err.instance),)
        if not path and err.validator == "required":  # a top-level key missing: named, at the top of the file
            name = next((k for k in err.validator_value if repr(k) in err.message), "")
            out.append(Problem(name, f"{err.message}, missing from the top level of the file", 1))
            continue
        out.append(Problem(".".join(path), _message(err), line_of(lines, path)))
    return out


def _message(err: Any) -> str:
    if list(err.absolute_path) == ["eval", "pass_policy"]:
        return policy_problem(err.instance)
    if list(err.absolute_path) == ["budget"] and err.validator == "minProperties":
        return "sets no limit: give max_usd_per_run and/or max_tokens_per_run, or remove the section"
    if err.absolute_path and err.absolute_path[0] == "gates" and len(err.absolute_path) > 1:
        return f"{err.instance!r} is not a gate; write it (or a list of them) like {FORMS}"
    if list(err.absolute_path) == ["compare", "confidence"] and err.validator != "type":
        return f"must be strictly between 0 and 1, like 0.95 (got {err.instance!r})"
    if err.validator == "pattern" and list(err.absolute_path)[-1:] == ["api_key"]:
        return "must be an environment reference like '${OPENAI_API_KEY}', never the key itself"
    if err.validator == "pattern" and list(err.absolute_path) == ["safety", "redact_key"]:
        return "must be an environment reference like '${GENAI_REDACT_KEY}', never the key itself"
    if err.validator == "pattern" and list(err.absolute_path) == ["views"]:
        return f"view name {err.instance!r} may hold only letters, digits, '_', '.' and '-'"
    if err.absolute_path and err.absolute_path[0] == "views" and len(err.absolute_path) == 2:
        return (f"{err.instance!r} is not a view: write a filter string like "
                "'em >= 0.6 and latency_p95_ms <= 1200'")
    if err.validator == "pattern" and list(err.absolute_path) in (["pipeline"], ["pipeline", "factory"]):
        return f"{err.instance!r} is neither 'builtin:<name>' nor 'package.module:factory'"
    return err.message


def semantic_problems(data: Any, lines: Lines) -> list[Problem]:
    """Rules a JSON Schema cannot say."""
    out: list[Problem] = []
    rag = data.get("rag") if isinstance(data, dict) else None
    if isinstance(rag, dict):
        size, overlap = rag.get("chunk_size", 128), rag.get("chunk_overlap", 16)
        if isinstance(size, int) and isinstance(overlap, int) and overlap >= size:
            out.append(Problem("rag.chunk_overlap", f"must be smaller than rag.chunk_size ({overlap} >= {size})",
                               line_of(lines, ("rag", "chunk_overlap")) or line_of(lines, ("rag", "chunk_size"))))
        reranker = rag.get("reranker")
        if isinstance(reranker, dict) and reranker.get("type") == "cross_encoder" and "path" not in reranker:
            out.append(Problem("rag.reranker.path", "a cross_encoder reranker needs the path of a local model folder",
                               line_of(lines, ("rag", "reranker"))))
    llm = data.get("llm") if isinstance(data, dict) else None
    provider = llm.get("provider") if isinstance(llm, dict) else None
    if isinstance(provider, str):
        if provider not in PROVIDERS:
            out.append(Problem("llm.provider", PROVIDERS.unknown_message(provider), line_of(lines, ("llm", "provider"))))
    out += gate_expression_problems(data.get("gates") if isinstance(data, dict) else None, lines)
    if isinstance(data, dict) and data.get("views") is not None:
        out += view_problems(data.get("views"), lines)
    if isinstance(data, dict) and factory_of(data.get("pipeline")) == "builtin:rag" and "rag" not in data:
        out.append(Problem("rag", "pipeline builtin:rag needs a rag section (at least rag.corpus)", line_of(lines, ("pipeline",))))
    return out


def gate_expression_problems(gates: Any, lines: Lines) -> list[Problem]:
    """Each gate expression parsed with the gate grammar, its direction checked against the metric's (unknown
    metrics and values that are not strings are reported by the other checks)."""
    if not isinstance(gates, dict):
        return []

    known = gateable_metrics()
    out: list[Problem] = []
    for key, value in gates.items():
        key = str(key)
        if key not in known:
            continue
        listed = isinstance(value, list)
        for i, expr in enumerate(value if listed else [value]):
            if not isinstance(expr, str) or not expr.strip():
                continue
            why = gate_problem(key, expr, METRICS.get(key).higher_is_better)
            if why:
                path = ("gates", key, str(i)) if listed else ("gates", key)
                out.append(Problem(".".join(path), why, line_of(lines, path)))
    return out


def apply_defaults(data: dict[str, Any], node: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fill schema defaults so the resolved config (and its hash) says every knob explicitly."""
    node = schema() if node is None else node
    out = dict(data)
    for key, sub in node.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = json.loads(json.dumps(sub["default"]))
        if isinstance(out.get(key), dict) and sub.get("type") == "object":
            out[key] = apply_defaults(out[key], sub)
    return out


def gateable_metrics() -> tuple[str, ...]:
    """Gate names come from the metric registry (built-ins and whatever a conftest registered)."""
    return METRICS.names()


def unavailable_reason(name: str) -> str | None:
    return METRICS.get(name).available
