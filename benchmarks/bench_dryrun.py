"""Target (issue "Verdicts you can trust", item 2): `pytest --genai-dry-run` of 1,000 cases < 5 s without a model call.

The command as a user runs it, end to end (pytest start, config, collection, building builtin:llm with the
counting stand-in, rendering and counting 1,000 prompts, the printed figures): an API model (openai_compatible,
never reached) counted by `llm.tokenizer: approx`, and the offline default SmolLM2 counted by its own tokenizer and
chat template (`model`). Medians of ROUNDS interleaved runs."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _util import PY, alternate, median, record

CASES = 1000
ROUNDS = 3
PROMPT = """id: qa
version: 1
template:
  - role: system
    content: Answer with a short span of the passage.
  - role: user
    content: "Passage: {{ context }}\\n\\nQuestion: {{ question }}"
"""


def _config(root: Path, name: str, llm: str) -> None:
    (root / name).write_text(
        "version: 1\npipeline: builtin:llm\nprompt: {id: qa, version: 1}\neval:\n  set: evals.jsonl\n"
        f"llm: {llm}\ntracking:\n  enabled: false\n  results_dir: runs\nenv:\n  lock_file: none.lock\n")


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "prompts").mkdir()
        (root / "prompts" / "qa.yaml").write_text(PROMPT)
        cases = [{"id": f"c{i}", "question": f"Which value does item {i} have in the ledger?", "answers": [f"v{i}"],
                  "context": f"Item {i} has value v{i} in the ledger. " * 4} for i in range(CASES)]
        (root / "evals.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
        _config(root, "api.yaml", "{provider: openai_compatible, model_id: m, base_url: 'http://127.0.0.1:9', "
                                  "tokenizer: approx, pricing: {input_per_1k_tokens: 0.15, output_per_1k_tokens: 0.6}}")
        _config(root, "local.yaml", "{provider: hf_local, model_id: smollm2-135m-instruct}")
        common = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--genai-dry-run"]
        times = alternate({k: common + ["--genai-config", f"{k}.yaml", "evals.jsonl"] for k in ("api", "local")},
                          root, ROUNDS)
    return {"cases": CASES, "rounds": ROUNDS, "dry_run_api_s": median(times["api"]),
            "dry_run_local_s": median(times["local"])}


if __name__ == "__main__":
    json.dump(record("dryrun", main()), sys.stdout, indent=2)
    print()
