"""LLM providers. Each provider module imports its heavy libraries itself, when built."""

from pytest_genai.llm.base import LLM, Generation, LLMError, build_llm

__all__ = ["LLM", "Generation", "LLMError", "build_llm"]
