"""Target (issue "Verdicts you can trust", item 4): `pytest-genai harvest` of 10,000 recorded requests < 5 s.

The command as a user runs it, end to end (process start, config, reading the local sink's JSONL, sanitizing,
deduplicating, sampling 100 cases, writing and re-reading the new set), on 10,000 synthetic request records of the
monitor's schema (about 3,200 distinct questions, 1% errors, 2% safety flags, a slow tail, PII planted), twice:
`--near-dup off`, and the default (near-duplicates by all-MiniLM-L6-v2 embeddings when the [rag] extra and the
embedder are installed, as here). Medians of ROUNDS interleaved runs."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _util import PY, REPO, median, time_command, record

RECORDS = 10_000
ROUNDS = 3


def main() -> dict[str, object]:
    sys.path.insert(0, str(REPO))
    from tests.test_harvest import config, records, write_records

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_records(root / "requests.jsonl", records(RECORDS))
        config(root)
        times: dict[str, list[float]] = {"off": [], "default": []}
        for r in range(ROUNDS):
            for mode in times:
                cmd = [PY, "-m", "pytest_genai.cli", "harvest", "--config", str(root / "genai.yaml"), "--records",
                       str(root / "requests.jsonl"), "--out", str(root / f"{mode}{r}.jsonl"), "--size", "100"]
                times[mode].append(time_command(cmd + (["--near-dup", "off"] if mode == "off" else []), root))
    return {"records": RECORDS, "rounds": ROUNDS, "harvest_off_s": median(times["off"]),
            "harvest_default_s": median(times["default"])}


if __name__ == "__main__":
    json.dump(record("harvest", main()), sys.stdout, indent=2)
    print()
