"""Target: recording a request costs the served model at most 1 ms per request.

A served pipeline (release/served.py `ServedPipeline`, the packaged model's predict) over a stub pipeline that
answers instantly, so what is timed is predict's own work: seeding, the guard (the eval's PII detectors), the
output row and, with a sink, the request record (build, sanitize, write). Single-row requests, half of them with
an e-mail and a phone number (the sanitizer's slow path); sinks `off`, `local` (JSONL append) and `mlflow` (the
request only queues the record: traces are made by a daemon thread and exported by MLflow's async logging, on a
sqlite store) in interleaved rounds; the overhead is the median per-request time with a sink minus without. At
the end the mlflow sink is flushed and the traces are counted, so a sink that silently drops is caught; traces
written per second (from the first request to the end of the flush) is the sustained rate a sqlite store takes."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _util import median, record

REQUESTS = 300
ROUNDS = 5


def _served(tmp: Path, sink: str):  # type: ignore[no-untyped-def]
    import yaml

    from pytest_genai.config import load_config
    from pytest_genai.context import PipelineContext
    from pytest_genai.monitor.record import ModelIdentity, Recorder, sink_from_config
    from pytest_genai.release.bundle import BUNDLE_FORMAT, BundleInfo
    from pytest_genai.release.served import ServedPipeline
    from pytest_genai.runtime import Runtime
    from pytest_genai.safety.guard import Guard
    from pytest_genai.sanitize import Sanitizer
    from pytest_genai.types import Answer, Usage

    (tmp / "e.jsonl").write_text('{"id": "a", "question": "q", "answers": ["x"]}\n')
    cfg = {"version": 1, "pipeline": "bench:factory", "eval": {"set": "e.jsonl"},
           "llm": {"model_id": "stub", "pricing": {"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.5}},
           "monitor": {"sink": sink, "path": str(tmp / f"requests-{sink}.jsonl")}}
    (tmp / f"{sink}.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(tmp / f"{sink}.yaml")
    san = Sanitizer.from_config(config)
    ctx = PipelineContext(config, None, Runtime(), san)

    def pipeline(case):  # type: ignore[no-untyped-def]
        text = "You said: " + case.question
        return Answer(text=text, usage=Usage(len(case.question.split()), len(text.split())))

    info = BundleInfo(BUNDLE_FORMAT, "bench", "bench:factory", None, "c", "e", None, None, None, {}, None, "x", False)
    identity = ModelIdentity("m-bench", "run", "bench-model", "1")
    return ServedPipeline(info, config, ctx, pipeline, Guard.from_config(config), san, identity,
                          Recorder(sink_from_config(config, identity), san))


def _question(i: int) -> str:
    return f"please mail jane.doe{i}@example.com or call (415) 555-{i % 10000:04d}" if i % 2 else f"status of order {i}?"


def _time(served, start: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds per single-row request."""
    times = []
    for i in range(start, start + REQUESTS):
        t0 = time.perf_counter()
        served.predict([{"question": _question(i)}])
        times.append(time.perf_counter() - t0)
    return median(times)


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ.pop("GENAI_MONITOR_PATH", None)
        os.environ.pop("GENAI_MONITOR_SINK", None)
        import mlflow

        mlflow.set_tracking_uri(uri)
        exp = mlflow.set_experiment("bench-monitor").experiment_id
        servers = {s: _served(tmp, s) for s in ("off", "local", "mlflow")}
        servers["mlflow"].recorder.sink.experiment_id = exp
        for served in servers.values():  # warm: imports, regexes, the sanitizer cache of the fixed prefix
            for i in range(50):
                served.predict([{"question": _question(10_000 + i)}])
        times: dict[str, list[float]] = {s: [] for s in servers}
        started = time.perf_counter()
        for r in range(ROUNDS):
            for k, (name, served) in enumerate(servers.items()):
                # new questions for every sink and round: the sanitizer's cache (one per process) never helps one
                times[name].append(_time(served, (r * len(servers) + k) * REQUESTS))
        sink = servers["mlflow"].recorder.sink
        t0 = time.perf_counter()
        sink.flush(timeout=600)
        flush_s = time.perf_counter() - t0
        export_s = time.perf_counter() - started
        traces = len(mlflow.search_traces(locations=[exp], max_results=100_000, return_type="list", include_spans=False))
        lines = (tmp / "requests-local.jsonl").read_text().splitlines()
        local_records = len(lines)
        raw_pii = sum("@example.com" in ln for ln in lines)
    per = {k: median(v) * 1000 for k, v in times.items()}
    sent = 50 + ROUNDS * REQUESTS
    return {
        "requests_per_round": REQUESTS, "rounds": ROUNDS,
        "predict_off_ms": per["off"], "predict_local_ms": per["local"], "predict_mlflow_ms": per["mlflow"],
        "local_overhead_ms": per["local"] - per["off"], "mlflow_overhead_ms": per["mlflow"] - per["off"],
        "mlflow_traces_written": traces, "mlflow_traces_expected": sent, "mlflow_flush_s": flush_s,
        "mlflow_traces_per_s": traces / export_s,
        "local_records_written": local_records, "local_records_expected": sent, "raw_pii_lines": raw_pii,
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    json.dump(record("monitor", main()), sys.stdout, indent=2)
    print()
