"""Pipelines: the protocol and the built-ins (`builtin:<name>`)."""

from pytest_genai.pipelines.base import Pipeline, build_pipeline

__all__ = ["Pipeline", "build_pipeline"]
