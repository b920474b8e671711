"""The MLflow model logged from code (`mlflow.pyfunc.log_model(python_model=<this file>)`): no pickle. Loading
it rebuilds the evaluated pipeline from the bundle artifact through the same factory (release/served.py)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel

from pytest_genai.release.bundle import BUNDLE_ARTIFACT
from pytest_genai.release.served import ServedPipeline, rows_of

warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")  # the signature is logged instead


class GenaiModel(PythonModel):
    """Input: rows of {question, context?, id?}. Output per row: {answer} and, for RAG, {retrieved_doc_ids}."""

    def load_context(self, context: Any) -> None:
        self.served = ServedPipeline.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # no hints: MLflow reads them as a schema

        return self.served.predict(rows_of(model_input))


mlflow.models.set_model(GenaiModel())
