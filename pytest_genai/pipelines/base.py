"""The Pipeline protocols, what a pipeline declares it can do (including the settings it takes), and how
`pipeline:` becomes one.

A factory declares the JSON Schema its `pipeline.options` must satisfy with `options_schema` (a dict, or a bool
schema), set by `@pipeline_options(schema)` or written as a class attribute; the options are checked against it
at load (and again before the factory is called), every problem a `file:line: pipeline.options.<key>: message`
with a did-you-mean for an unknown key. The built-ins take no options (`NO_OPTIONS`). A factory that declares no
schema gets its options unchecked, as written::

    @pipeline_options({"type": "object", "additionalProperties": False, "required": ["greeting"],
                       "properties": {"greeting": {"type": "string"}, "max_hops": {"type": "integer", "minimum": 1}}})
    def build(ctx):
        greeting, hops = ctx.options["greeting"], ctx.options.get("max_hops", 2)
        ...
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, Union, runtime_checkable

from pytest_genai.config.errors import ConfigError
from pytest_genai.config.pipeline_options import by_name, options_schema_of, resolve_factory
from pytest_genai.config.pipeline_spec import options_problems, written_options
from pytest_genai.context import wants_context
from pytest_genai.llm.base import warm_up
from pytest_genai.registry import UnknownName
from pytest_genai.types import Answer, Case


@runtime_checkable
class Pipeline(Protocol):
    """Called with a case (and `seed=` when it accepts one); returns an Answer or a plain string."""

    def __call__(self, case: Case) -> Union[Answer, str]: ...


@runtime_checkable
class BatchPipeline(Protocol):
    """A pipeline that answers several cases in one call (`batch(cases, seeds)`); it runs in batches of
    `llm.batch_size` when `batchable` is true (greedy decoding: the same answers as one at a time)."""

    batchable: bool

    def __call__(self, case: Case) -> Union[Answer, str]: ...

    def batch(self, cases: Sequence[Case], seeds: Sequence[int]) -> Sequence[Union[Answer, str]]: ...


@dataclass(frozen=True)
class Capabilities:
    """What the execution plan may do with a pipeline: nothing is assumed that it does not declare."""

    concurrent: bool  # `concurrent = True`: thread-safe, no process-wide RNG (a pool may run it)
    batch: bool  # implements BatchPipeline and says `batchable`
    accepts_seed: bool  # `__call__(case, seed)`: the case's seed reaches the call


def capabilities(pipeline: Any) -> Capabilities:
    batch = callable(getattr(pipeline, "batch", None)) and bool(getattr(pipeline, "batchable", False))
    return Capabilities(bool(getattr(pipeline, "concurrent", False)), batch, accepts_seed(pipeline))


def accepts_seed(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "seed" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_options(config: Any, factory: Any) -> None:
    """Before the factory is called: `pipeline.options` (as written, `${ENV}` references unresolved) against the
    schema it declares; a ConfigError with every problem. At load they were checked already when written; this
    also covers what load could not see (a required option and no `options` at all)."""
    spec = config.pipeline.factory
    schema = options_schema_of(factory, spec)
    if schema is None:
        return
    problems = options_problems(spec, schema, written_options(config.public.get("pipeline")), config.lines,
                                config.factory_key)
    if problems:
        raise ConfigError(config.path, problems)


def build_pipeline(ctx: Any) -> Any:
    """`builtin:<name>` or a registered name from the pipeline registry; else a `module:attr` factory
    importable from the config's folder. The factory gets the context (or the config, see context.py), once its
    options satisfy the schema it declares."""
    config = ctx.config
    spec = config.pipeline.factory
    base = str(config.base_dir)
    if base not in sys.path:  # a factory next to the config imports like a conftest would
        sys.path.insert(0, base)
    try:
        factory = resolve_factory(spec)
    except UnknownName as exc:
        raise config.error(config.factory_key, f"{exc}; a custom pipeline is a `package.module:factory` target") from None
    except (ImportError, AttributeError, ValueError) as exc:
        if by_name(spec):  # a registered target that does not import: its own traceback
            raise
        raise config.error(
            config.factory_key, f"cannot load the factory {spec!r}: {type(exc).__name__}: {exc} (the module must be importable: "
            f"installed, or under {base})") from None
    check_options(config, factory)
    pipeline = factory(ctx) if wants_context(factory) else factory(config)
    if not callable(pipeline):
        raise config.error(config.factory_key, f"the factory {spec!r} returned {type(pipeline).__name__}, not a callable taking a case")
    return pipeline


def warm_up_pipeline(pipeline: Any, ctx: Any) -> None:
    """At build, before the first timed case, everything lazy: the pipeline's `warm_up()` (the built-ins warm their
    provider and retriever), else the provider a factory took from `ctx.llm`. Nothing of it is cached, recorded or
    counted in tokens or cost, and a replay builds no provider. A custom pipeline with lazy state of its own (an
    index, a client) says how to warm it up with a `warm_up()` method."""
    if not warm_up(pipeline) and getattr(ctx, "llm_built", False):
        warm_up(ctx.llm)
