"""Pipelines: the protocols, the built-ins (`builtin:<name>`) and how a factory declares its options."""

from pytest_genai.config.pipeline_options import NO_OPTIONS, options_schema_of, pipeline_options
from pytest_genai.pipelines.base import (
                                         BatchPipeline,
                                         Capabilities,
                                         Pipeline,
                                         build_pipeline,
                                         capabilities,
                                         warm_up_pipeline,
)

__all__ = ["NO_OPTIONS", "BatchPipeline", "Capabilities", "Pipeline", "build_pipeline", "capabilities", "options_schema_of",
           "pipeline_options", "warm_up_pipeline"]
