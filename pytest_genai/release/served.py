"""A packaged pipeline, rebuilt from its bundle through the same factory and context as the eval, answering
rows of `{question, context?, id?}` the way the eval answered cases: the same seeds (from the row's id, or
the question), the same batching for batchable pipelines, the same guardrail. Every row answered (or failed)
is also a request record for monitoring (pytest_genai/monitor/record.py), sanitized and written to the sink
the bundle config's `monitor:` section names; recording never fails a request."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pytest_genai.config import ConfigError, load_config
from pytest_genai.context import PipelineContext, start_ledger, take_ledger
from pytest_genai.monitor.record import (
    ModelIdentity,
    Recorder,
    SinkError,
    identity_of,
    new_request_id,
    request_record,
    sink_from_config,
)
from pytest_genai.pipelines import build_pipeline
from pytest_genai.pipelines.base import accepts_seed, capabilities
from pytest_genai.prompts import PromptError, load_prompt
from pytest_genai.release.bundle import (
    CONFIG_FILE,
    INDEX_DIR,
    BundleError,
    BundleInfo,
    check_artifacts,
    check_release,
    read_bundle_info,
)
from pytest_genai.runtime import Runtime
from pytest_genai.safety.guard import Guard
from pytest_genai.sanitize import Sanitizer, headline
from pytest_genai.scoring import as_answer
from pytest_genai.types import Answer, Case, Usage

INPUT_COLUMNS = ("question", "context", "id")


@dataclass
class ServedPipeline:
    info: BundleInfo
    config: Any
    context: Any
    pipeline: Any
    guard: Any
    sanitizer: Any
    identity: ModelIdentity = field(default_factory=ModelIdentity)
    recorder: Recorder = field(default_factory=lambda: Recorder(None, None))

    @classmethod
    def load(cls, bundle: Path) -> "ServedPipeline":
        info = read_bundle_info(bundle)
        check_release(info)
        check_artifacts(bundle, info)
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
        identity = identity_of(bundle.parent.parent)  # <model>/artifacts/bundle: the MLmodel is two levels up
        try:
            recorder = Recorder(sink_from_config(config, identity), sanitizer)
        except SinkError as exc:
            raise BundleError(str(exc)) from None
        return cls(info, config, ctx, pipeline, guard, sanitizer, identity, recorder)

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Answer every row; each gets a `request_id` (in its output row and its request record). A row whose
        pipeline call fails gets `answer` None and its `error` (sanitized, last line) and the others are answered;
        the request fails only when every row failed (a broken model stays loud), after every record is written."""
        ts = time.time()
        try:
            cases = [row_case(r, i) for i, r in enumerate(rows)]
        except ValueError as exc:
            self._record_rejected(rows, ts, str(exc))
            raise
        answered, failure = self._answer(cases)
        texts = [self.sanitizer.text(a.answer.text) if a.answer is not None else None for a in answered]
        verdicts: list[Any] = [None] * len(cases)
        if self.guard.active:  # the eval's guardrail on the sanitized answer: a blocked answer is the refusal
            todo = [i for i, t in enumerate(texts) if t is not None]
            for i, v in zip(todo, self.guard.check_many([texts[i] or "" for i in todo])):
                verdicts[i] = v
        results: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for case, a, text, verdict in zip(cases, answered, texts, verdicts):
            request_id = new_request_id()
            answer = a.answer
            out_text = None
            if answer is not None:
                out_text = self.guard.refusal if verdict is not None and verdict.blocked else answer.text
                row = self._row(answer, out_text)
            else:
                row = {"answer": None, "error": _last_line(a.error)}
                if self.info.rag:
                    row["retrieved_doc_ids"] = []
            row["request_id"] = request_id
            results.append(row)
            if self.recorder.enabled:
                usage = answer.usage if answer is not None else None
                records.append(request_record(
                    request_id=request_id, ts=ts, identity=self.identity, question=case.question,
                    answer=self.guard.refusal if verdict is not None and verdict.blocked else text,
                    latency_ms=a.latency_ms, input_tokens=usage.input_tokens if usage else 0,
                    output_tokens=usage.output_tokens if usage else 0, pricing=self.pricing, verdict=verdict,
                    retrieved=(answer.metadata.get("retrieved") or ()) if answer is not None else (),
                    error=a.error, batched=a.batched))
        self.recorder.emit(records)
        if failure is not None and all(a.answer is None for a in answered):
            raise failure
        return results

    def _answer(self, cases: Sequence[Case]) -> tuple[list["_Answered"], BaseException | None]:
        """Each case's answer, measured latency and error (a failing batch fails its rows only); the first
        failure is returned too, for a request in which no row was answered."""
        caps = capabilities(self.pipeline)
        size = int(self.config.get("llm.batch_size") or 1)
        out: list[_Answered] = []
        failure: BaseException | None = None
        if caps.batch and size > 1 and len(cases) > 1:
            for start in range(0, len(cases), size):
                chunk = cases[start:start + size]
                t0 = time.perf_counter()
                try:
                    outs = list(self.pipeline.batch(chunk, [self.context.seed_for(c) for c in chunk]))
                except Exception as exc:
                    ms = (time.perf_counter() - t0) * 1000
                    out += [_Answered(None, ms, self.sanitizer.exception(exc, 6), True) for _ in chunk]
                    failure = failure or exc
                    continue
                ms = (time.perf_counter() - t0) * 1000  # each row waited for its whole batch, as a case does in the eval
                for o in outs:
                    answer, _, error = as_answer(o, ms)
                    out.append(_Answered(answer, ms, error, True))
                    if answer is None and failure is None:
                        failure = RuntimeError(error)
        else:
            pass_seed = accepts_seed(self.pipeline)
            for c in cases:
                seed = self.context.seed_for(c)
                start_ledger()
                t0 = time.perf_counter()
                try:
                    o = self.pipeline(c, seed=seed) if pass_seed else self.pipeline(c)
                except Exception as exc:
                    take_ledger()
                    out.append(_Answered(None, (time.perf_counter() - t0) * 1000, self.sanitizer.exception(exc, 6), False))
                    failure = failure or exc
                    continue
                ms = (time.perf_counter() - t0) * 1000
                calls = take_ledger()
                answer, _, error = as_answer(o, ms)
                if answer is not None and calls and answer.usage.input_tokens == 0 and answer.usage.output_tokens == 0:
                    answer = replace(answer, usage=Usage(sum(int(g.input_tokens) for _, g, _ in calls),
                                                         sum(int(g.output_tokens) for _, g, _ in calls)))
                out.append(_Answered(answer, ms, error, False))
                if answer is None and failure is None:
                    failure = RuntimeError(error)
        return out, failure

    def _row(self, answer: Answer, text: str) -> dict[str, Any]:
        row: dict[str, Any] = {"answer": text, "error": None}
        if self.info.rag:
            retrieved = answer.metadata.get("retrieved") or ()
            row["retrieved_doc_ids"] = [str(r["doc_id"]) for r in retrieved]
        return row

    def _record_rejected(self, rows: Sequence[Any], ts: float, error: str) -> None:
        if not self.recorder.enabled:
            return
        self.recorder.emit([request_record(
            request_id=new_request_id(), ts=ts, identity=self.identity,
            question=r.get("question") if isinstance(r, Mapping) and isinstance(r.get("question"), str) else None,
            answer=None, latency_ms=0.0, input_tokens=0, output_tokens=0, pricing=self.pricing, verdict=None,
            error=f"ValueError: {error}") for r in rows])

    @property
    def pricing(self) -> tuple[float, float]:
        return (float(self.config.get("llm.pricing.input_per_1k_tokens", 0.0) or 0.0),
                float(self.config.get("llm.pricing.output_per_1k_tokens", 0.0) or 0.0))


@dataclass(frozen=True)
class _Answered:
    answer: Answer | None
    latency_ms: float
    error: str | None
    batched: bool


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
    """pandas fills a missing optional column with NaN: that is no value."""
    return None if isinstance(value, float) and value != value else value


def _last_line(error: str | None) -> str:
    """What a client sees of a failed row: the exception line of the (sanitized) traceback."""
    return headline(error, "the pipeline failed")
