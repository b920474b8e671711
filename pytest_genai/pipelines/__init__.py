"""Pipelines: the protocols and the built-ins (`builtin:<name>`)."""

from pytest_genai.pipelines.base import (
    BatchPipeline, Capabilities, Pipeline, build_pipeline, capabilities, warm_up_pipeline,
)

__all__ = ["BatchPipeline", "Capabilities", "Pipeline", "build_pipeline", "capabilities", "warm_up_pipeline"]
