"""The GGUF -> torch conversion is cached by weights hash: a second process should load SmolLM2 in
about a second instead of ~15 s. Times `build_llm` in fresh processes: one with an empty cache
(dequantise + save), then warm ones (load the cached safetensors)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _util import PY, REPO, record

WARM_ROUNDS = 3
SNIPPET = """
import json, time
started = time.perf_counter()
import torch, transformers  # imports timed apart: they are paid by any torch pipeline
imported = time.perf_counter()
from pytest_genai.config import load_config
from pytest_genai.llm import build_llm
llm = build_llm(load_config({config!r}))
print(json.dumps({{"total_s": time.perf_counter() - started, "import_s": imported - started, "load_s": llm.load_seconds}}))
"""


def _one(cache: Path) -> dict[str, float]:
    code = SNIPPET.format(config=str(REPO / "genai.yaml"))
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTEST_GENAI_CACHE_DIR": str(cache)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cold = _one(Path(tmp))
        warm = [_one(Path(tmp)) for _ in range(WARM_ROUNDS)]
    return {
        "cold_load_s": cold["load_s"], "cold_process_total_s": cold["total_s"],
        "import_torch_transformers_median_s": statistics.median(w["import_s"] for w in warm),
        "warm_load_median_s": statistics.median(w["load_s"] for w in warm),
        "warm_process_total_median_s": statistics.median(w["total_s"] for w in warm),
        "warm_rounds": WARM_ROUNDS,
    }


if __name__ == "__main__":
    json.dump(record("model_load", main()), sys.stdout, indent=2)
    print()
