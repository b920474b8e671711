"""Config: load, validate (JSON Schema + did-you-mean), resolve ${ENV} secrets, hash."""

from pytest_genai.config.errors import ConfigError, Problem
from pytest_genai.config.model import GenaiConfig, canonical_json, load_config

__all__ = ["ConfigError", "GenaiConfig", "Problem", "canonical_json", "load_config"]
