"""Targets: registering adds at most 5 s to a session beyond the eval; loading the registered model in a warm
process takes at most 1.5x the time `hf_local` takes to build the same pipeline.

The bundled RAG example on its first four questions (pytest_genai/testing/example_project.py), on a sqlite store.
A first session records the LLM answers (`--genai-cache record`) and registers version 1; then sessions replaying
them run with and without `--genai-register`, interleaved, and the difference of the medians is what registering
adds (packaging, logging the model, the version, its tags and alias). In one process, after one warm-up of each,
the pipeline is built from the config (`build_pipeline`, what a session does) and the model is loaded
(`mlflow.pyfunc.load_model('models:/NAME@staging')`), interleaved; the ratio of the medians is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _util import PY, alternate, example_env, median, record

from pytest_genai.testing.example_project import copy_example

MODEL = "bench-release"
ROUNDS = 3

LOAD = textwrap.dedent("""
    import json, statistics, sys, time
    import mlflow
    from pytest_genai.config import load_config
    from pytest_genai.context import PipelineContext
    from pytest_genai.pipelines import build_pipeline
    from pytest_genai.prompts import load_prompt
    from pytest_genai.runtime import Runtime
    from pytest_genai.sanitize import Sanitizer

    def build():
        cfg = load_config("genai.yaml")
        prompt = load_prompt(cfg.resolve_path("prompt.dir"), cfg.get("prompt.id"), cfg.get("prompt.version"))
        ctx = PipelineContext(cfg, prompt, Runtime(), Sanitizer.from_config(cfg))
        pipeline = build_pipeline(ctx)
        ctx.llm.inner.model  # the weights are loaded lazily by some providers: count them
        return pipeline

    def load():
        return mlflow.pyfunc.load_model(sys.argv[1])

    times = {"build": [], "load": []}
    build(); load()  # warm: imports, converted weights, OS file cache
    for _ in range(int(sys.argv[2])):
        for name, fn in (("build", build), ("load", load)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    print("TIMES " + json.dumps(times))
""")


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "example"
        path.mkdir()
        copy_example(path, model_name=MODEL)
        uri = f"sqlite:///{path / 'mlflow.db'}"
        env = example_env(uri)
        base = [PY, "-m", "pytest", "--genai-config", "genai.yaml", "-q", "-p", "no:cacheprovider"]
        first = subprocess.run([*base, "--genai-cache", "record", "--genai-register"], cwd=path, env={**os.environ, **env},
                               capture_output=True, text=True)
        if first.returncode != 0 or "registered:" not in first.stdout:
            raise RuntimeError(f"the first session did not register:\n{first.stdout[-3000:]}\n{first.stderr[-2000:]}")
        times = alternate({"eval": [*base, "--genai-cache", "replay"],
                           "eval_and_register": [*base, "--genai-cache", "replay", "--genai-register"]}, path, ROUNDS, env)
        proc = subprocess.run([PY, "-c", LOAD, f"models:/{MODEL}@staging", str(ROUNDS)], cwd=path,
                              env={**os.environ, **env}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"load timing failed:\n{proc.stderr[-3000:]}")
        load = json.loads(proc.stdout.split("TIMES ", 1)[1])
    added = median(times["eval_and_register"]) - median(times["eval"])
    return {
        "eval_median_s": median(times["eval"]), "eval_and_register_median_s": median(times["eval_and_register"]),
        "register_added_s": added, "build_pipeline_median_s": median(load["build"]),
        "load_model_median_s": median(load["load"]), "load_over_build": median(load["load"]) / median(load["build"]),
        "rounds": ROUNDS, "cases": 4,
    }


if __name__ == "__main__":
    json.dump(record("release", main()), sys.stdout, indent=2)
    print()
