"""What the journal costs per case (issue "Durable runs": report what each mode costs per case). No target.

The journal's own work for each finished case, as a session does it: `Journal.append` of a CaseResult (its JSON line,
one write(2) on the O_APPEND descriptor) with the fsync thread running (every 0.5 s), for 10,000 cases of the size
the bundled example writes (an answer, gold answers, a prompt, retrieved chunks' metadata), then `close`. Per case =
(total - the same loop building the same JSON lines without writing them) / cases; median of ROUNDS."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _util import record

CASES = 10_000
ROUNDS = 5


def _results() -> list:
    from pytest_genai.types import CaseResult

    retrieved = tuple({"chunk_id": f"doc{i}#0", "doc_id": f"doc{i}", "score": 0.5, "rank": i + 1, "used": i < 2}
                      for i in range(4))
    return [CaseResult(id=f"c{i:05d}", question=f"What does the handbook say about item {i}?", answer="an answer " * 8,
                       answers=("gold answer",), em=0.0, f1=0.5, latency_ms=120.0, input_tokens=300, output_tokens=20,
                       cost_usd=0.0, seed=i, prompt="Passage: ... " * 40, retrieved=retrieved) for i in range(CASES)]


def main() -> dict[str, float]:
    from pytest_genai.runlog import SCHEMA_VERSION, Provenance, RunRecord
    from pytest_genai.tracking.journal import Journal

    results = _results()
    rec = RunRecord(schema_version=SCHEMA_VERSION, status="running", started_at="", ended_at="", provenance=Provenance())
    with_journal, without = [], []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            journal = Journal.open(Path(tmp), "0" * 64, rec)
            for r in results:
                journal.append(r)
            journal.close(final=False)
            with_journal.append(time.perf_counter() - started)
        started = time.perf_counter()
        for r in results:
            json.dumps(r.to_dict(), ensure_ascii=False)
        without.append(time.perf_counter() - started)
    total, base = statistics.median(with_journal), statistics.median(without)
    return {"cases": CASES, "rounds": ROUNDS, "journal_s": total, "serialize_only_s": base,
            "journal_per_case_ms": total / CASES * 1000, "journal_write_per_case_ms": (total - base) / CASES * 1000}


if __name__ == "__main__":
    json.dump(record("journal", main()), sys.stdout, indent=2)
    print()
