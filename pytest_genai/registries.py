"""Every registry of the package in one place, built-ins registered lazily (`module:attr` strings: no
import until used). A user's conftest or plugin adds to them through the `pytest_genai_register` hook."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from pytest_genai.metrics.registry import METRICS, Metric
from pytest_genai.registry import Registry

PIPELINES: Registry[object] = Registry("pipeline", check=callable)
PIPELINES.register("builtin:llm", "pytest_genai.pipelines.llm:LLMPipeline.from_context")
PIPELINES.register("builtin:rag", "pytest_genai.pipelines.rag:RAGPipeline.from_context")

PROVIDERS: Registry[object] = Registry("provider", check=callable)
PROVIDERS.register("hf_local", "pytest_genai.llm.hf_local:HFLocalLLM.from_config")
PROVIDERS.register("openai_compatible", "pytest_genai.llm.openai_compatible:OpenAICompatibleLLM.from_config")

CLASSIFIERS: Registry[object] = Registry("toxicity classifier", check=callable)
CLASSIFIERS.register("profanity_check", "pytest_genai.safety.toxicity:ProfanityCheckClassifier")

# Packaged-model flavours (the release feature registers `pyfunc` here).
MODELS: Registry[object] = Registry("packaged model", check=callable)


@dataclass(frozen=True)
class Registries:
    """What `pytest_genai_register(registries)` receives."""

    metrics: Registry[Metric]
    pipelines: Registry[object]
    providers: Registry[object]
    classifiers: Registry[object]
    models: Registry[object]


def registries() -> Registries:
    return Registries(METRICS, PIPELINES, PROVIDERS, CLASSIFIERS, MODELS)


def load_conftest(folder: Path) -> None:
    """What pytest would register: the conftest.py beside the config (its `register_metric` calls and its
    `pytest_genai_register` hook), so a gate on a conftest metric validates as it runs."""
    path = folder / "conftest.py"
    if not path.is_file():
        return
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("_genai_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hook = getattr(module, "pytest_genai_register", None)
    if callable(hook):
        hook(registries=registries())
