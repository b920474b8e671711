"""The Pipeline protocols, what a pipeline declares it can do, and how `pipeline:` becomes one."""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, Union, runtime_checkable

from pytest_genai.llm.base import warm_up
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


def build_pipeline(ctx: Any) -> Any:
    """`builtin:<name>` or a registered name from the pipeline registry; else a `module:attr` factory
    importable from the config's folder. The factory gets the context (or the config, see context.py)."""
    from pytest_genai.context import wants_context
    from pytest_genai.registries import PIPELINES
    from pytest_genai.registry import UnknownName
    from pytest_genai.resolve import import_target

    config = ctx.config
    spec = config.pipeline.factory
    base = str(config.base_dir)
    if base not in sys.path:  # a factory next to the config imports like a conftest would
        sys.path.insert(0, base)
    if spec in PIPELINES or ":" not in spec or spec.startswith("builtin:"):
        try:
            factory = PIPELINES.get(spec)
        except UnknownName as exc:
            raise config.error(config.factory_key, f"{exc}; a custom pipeline is a `package.module:factory` target") from None
    else:
        try:
            factory = import_target(spec)
        except (ImportError, AttributeError, ValueError) as exc:
            raise config.error(
                config.factory_key, f"cannot load the factory {spec!r}: {type(exc).__name__}: {exc} (the module must be importable: "
                f"installed, or under {base})") from None
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
