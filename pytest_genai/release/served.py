"""A packaged pipeline, rebuilt from its bundle through the same factory and context as the eval, answering
rows of `{question, context?, id?}` the way the eval answered cases: the same seeds (from the row's id, or
the question), the same batching for batchable pipelines, the same guardrail."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pytest_genai.release.bundle import CONFIG_FILE, INDEX_DIR, BundleError, BundleInfo, check_release, read_bundle_info
from pytest_genai.types import Answer, Case

INPUT_COLUMNS = ("question", "context", "id")


@dataclass
class ServedPipeline:
    info: BundleInfo
    config: Any
    context: Any
    pipeline: Any
    guard: Any
    sanitizer: Any

    @classmethod
    def load(cls, bundle: Path) -> "ServedPipeline":
        from pytest_genai.config import ConfigError, load_config
        from pytest_genai.context import PipelineContext
        from pytest_genai.pipelines import build_pipeline
        from pytest_genai.prompts import PromptError, load_prompt
        from pytest_genai.runtime import Runtime
        from pytest_genai.safety.guard import Guard
        from pytest_genai.sanitize import Sanitizer

        info = read_bundle_info(bundle)
        check_release(info)
        try:
            config = load_config(bundle / CONFIG_FILE)
        except ConfigError as exc:
            raise BundleError(f"the packaged config does not load here: {exc}") from None
        prompt = None
        if config.get("prompt") is not None:
            try:
                prompt = load_prompt(config.resolve_path("prompt.dir"), config.get("prompt.id"), config.get("prompt.version"))  # type: ignore[arg-type]
            except PromptError as exc:
                raise BundleError(f"the packaged prompt does not load: {exc}") from None
            if info.prompt_hash and prompt.hash != info.prompt_hash:
                raise BundleError(f"the packaged prompt {prompt.ref} hashes to {prompt.hash}, not the evaluated {info.prompt_hash}")
        sanitizer = Sanitizer.from_config(config)
        index = bundle / INDEX_DIR if info.rag else None
        ctx = PipelineContext(config, prompt, Runtime(), sanitizer, prebuilt_index=index)
        pipeline = build_pipeline(ctx)
        tags = getattr(pipeline, "tags", None) or {}
        fp = tags.get("index.fingerprint")
        if info.index_fingerprint and fp and fp != info.index_fingerprint:
            raise BundleError(f"the packaged index is {fp}, the evaluated one {info.index_fingerprint}")
        guard = Guard.from_config(config)
        guard.probe()
        return cls(info, config, ctx, pipeline, guard, sanitizer)

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        from pytest_genai.pipelines.base import accepts_seed, capabilities
        from pytest_genai.scoring import as_answer

        cases = [row_case(r, i) for i, r in enumerate(rows)]
        caps = capabilities(self.pipeline)
        size = int(self.config.get("llm.batch_size") or 1)
        outs: list[Any] = []
        if caps.batch and size > 1 and len(cases) > 1:
            for start in range(0, len(cases), size):
                chunk = cases[start:start + size]
                outs.extend(self.pipeline.batch(chunk, [self.context.seed_for(c) for c in chunk]))
        else:
            pass_seed = accepts_seed(self.pipeline)
            for c in cases:
                seed = self.context.seed_for(c)
                outs.append(self.pipeline(c, seed=seed) if pass_seed else self.pipeline(c))
        results = []
        for out in outs:
            answer, _, error = as_answer(out, 0.0)
            if answer is None:
                raise RuntimeError(error)
            results.append(self._row(answer))
        return results

    def _row(self, answer: Answer) -> dict[str, Any]:
        text = answer.text
        if self.guard.active:  # the eval's guardrail: a blocked answer is the refusal
            verdict = self.guard.check(self.sanitizer.text(text), toxicity=self.guard.toxicity_blocks)
            if verdict.blocked:
                text = self.guard.refusal
        row: dict[str, Any] = {"answer": text}
        if self.info.rag:
            retrieved = answer.metadata.get("retrieved") or ()
            row["retrieved_doc_ids"] = [str(r["doc_id"]) for r in retrieved]
        return row


def row_case(row: Mapping[str, Any] | str, index: int) -> Case:
    """A request row as a case. Its seed comes from its id: the eval case's id reproduces the eval's draw; without
    one, a hash of the question (the same question always draws the same)."""
    if isinstance(row, str):
        row = {"question": row}
    question = row.get("question")
    if not isinstance(question, str) or not question:
        raise ValueError(f"row {index}: 'question' must be a non-empty string (columns: {', '.join(INPUT_COLUMNS)})")
    rid = row.get("id")
    if not isinstance(rid, str) or not rid:
        rid = "q-" + hashlib.sha256(question.encode()).hexdigest()[:16]
    context = row.get("context")
    return Case(id=rid, question=question, answers=(), context=context if isinstance(context, str) and context else None)


def rows_of(model_input: Any) -> list[Any]:
    """pyfunc input (a DataFrame after signature enforcement, a list of dicts, a dict, a string) as rows."""
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):
        return [{k: _plain(v) for k, v in r.items()} for r in model_input.to_dict(orient="records")]
    if isinstance(model_input, (str, Mapping)):
        return [model_input]
    if isinstance(model_input, Iterable):
        return list(model_input)
    raise TypeError(f"cannot read {type(model_input).__name__} as rows of {{question, context?, id?}}")


def _plain(value: Any) -> Any:
    try:
        import math

        if isinstance(value, float) and math.isnan(value):
            return None  # pandas' missing value for an optional column
    except Exception:  # pragma: no cover
        pass
    return value
