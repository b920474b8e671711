"""`pytest-genai harvest`: served-request records -> a new eval-set file, sanitized by harvest itself, deduplicated,
stratified (errors, safety-flagged, slow requests represented), each case with its provenance; never overwriting;
seeded; and the set it writes runs as an eval with its own snapshot hash."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from pytest_genai.cli import main
from pytest_genai.harvest.sample import allocate, distinct_questions, slow_threshold
from tests.conftest import Project

EMAIL, CARD, KEY = "jane.doe@example.com", "4111 1111 1111 1111", "ghp_" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7c"
TOPICS = ["capital of France", "boiling point of water", "author of Hamlet", "speed of light", "largest planet",
          "formula of water", "height of Everest", "year of the moon landing", "inventor of the telephone"]


def records(n: int = 10_000, seed: int = 1) -> list[dict[str, Any]]:
    """A served model's traffic: ~n/3 distinct questions (repeats), 1% errors, 2% safety flags, a slow tail, PII
    and a key planted in a few questions and answers."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randrange(n // 3)
        question = f"What is the {TOPICS[k % len(TOPICS)]}? (variant {k})"
        answer = f"answer {k}"
        if k % 500 == 7:
            question += f" Mail me at {EMAIL}, card {CARD}"
            answer += f" token {KEY}"
        error = "TimeoutError: the model did not answer" if rng.random() < 0.01 else None
        flags = ["TOXICITY"] if rng.random() < 0.02 else []
        latency = rng.lognormvariate(5, 0.4) + (4000 if rng.random() < 0.05 else 0)
        out.append({"schema": 1, "request_id": f"{i:08x}{rng.getrandbits(64):016x}", "ts": 1_765_000_000 + i,
                    "time": f"2026-12-01T00:{(i // 60) % 60:02d}:{i % 60:02d}.000Z", "model_name": "qa-model",
                    "model_version": "3", "model_id": "m-0123456789abcdef", "model_run_id": "r1",
                    "question": question, "answer": None if error else answer, "latency_ms": latency,
                    "input_tokens": 10, "output_tokens": 3, "cost_usd": 0.0, "safety_flags": flags,
                    "toxicity": None, "blocked": False, "critical": False, "retrieval_top_score": None,
                    "retrieved_doc_ids": [], "error": error, "batched": False})
    return out


def write_records(path: Path, recs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def config(tmp: Path, **extra: Any) -> Path:
    cfg = {"version": 1, "seed": 11, "pipeline": "echo_pipeline:factory", "eval": {"set": "evals/harvested.jsonl"},
           "safety": {"redact": False}, "tracking": {"enabled": False, "results_dir": "runs"},
           "env": {"lock_file": "none.lock"}, **extra}
    path = tmp / "genai.yaml"
    path.write_text(json.dumps(cfg))
    return path


def harvest(tmp: Path, out: str, *args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["harvest", "--config", str(tmp / "genai.yaml"), "--out", str(tmp / out), "--near-dup", "off",
                     *args])
    return code, stdout.getvalue(), stderr.getvalue()


def read_set(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_harvest_samples_a_sanitized_stratified_set_with_provenance(tmp_path: Path) -> None:
    recs = records()
    src = write_records(tmp_path / "requests.jsonl", recs)
    config(tmp_path)  # safety.redact false: harvest sanitizes anyway
    code, out, err = harvest(tmp_path, "evals/harvested.jsonl", "--records", str(src), "--size", "200")
    assert code == 0, err
    cases = read_set(tmp_path / "evals/harvested.jsonl")
    assert len(cases) == 200 and len({c["id"] for c in cases}) == 200
    text = (tmp_path / "evals/harvested.jsonl").read_text()
    for raw in (EMAIL, CARD, KEY, CARD.replace(" ", "")):
        assert raw not in text and raw not in out
    planted = [c for c in cases if "Mail me at" in c["question"]]
    assert all("<EMAIL" in c["question"] for c in planted)

    # stratified: each rare stratum gets min(its distinct questions, 20% of 200) places, the rest ordinary ones
    distinct = distinct_questions(recs)
    have = {s: sum(c.stratum == s for c in distinct) for s in ("error", "flagged", "slow", "normal")}
    tags = {s: sum(s in c["tags"] for c in cases) for s in have}
    assert tags == allocate(have, 200, 0.2) and tags["error"] == min(have["error"], 40) > 0
    assert tags["flagged"] == min(have["flagged"], 40) > 0 and tags["slow"] == 40
    # exact deduplication: one case per question; provenance; the served answer as the reference, or none
    assert len({" ".join(c["question"].lower().split()) for c in cases}) == 200
    by_id = {r["request_id"]: r for r in recs}
    for c in cases:
        s = c["source"]
        rec = by_id[s["request_id"]]
        assert c["id"] == "h-" + s["request_id"][:12] and s["model_name"] == "qa-model" and s["model_version"] == "3"
        assert s["time"] == rec["time"] and s["requests"] >= 1 and s["kind"] == "served"
        if rec["error"]:
            assert c["answers"] == [] and "needs_expected" in c["tags"] and "error" in c["tags"]
        else:
            assert c["answers"] == [rec["answer"]] or "Mail me at" in rec["question"]
            assert "review" in c["tags"]
    slowest = slow_threshold(recs)
    assert all(by_id[c["source"]["request_id"]]["latency_ms"] >= slowest for c in cases if "slow" in c["tags"])
    assert "eval_set.hash " in out and "wrote 200 case(s)" in out and "error 40 of" not in out.split("wrote")[0]

    # seeded: the same records and seed give the same file; another seed another sample
    assert harvest(tmp_path, "again.jsonl", "--records", str(src), "--size", "200")[0] == 0
    assert (tmp_path / "again.jsonl").read_text() == text
    assert harvest(tmp_path, "other.jsonl", "--records", str(src), "--size", "200", "--seed", "5")[0] == 0
    assert (tmp_path / "other.jsonl").read_text() != text

    # never overwrites
    before = (tmp_path / "again.jsonl").read_bytes()
    code, _, err = harvest(tmp_path, "again.jsonl", "--records", str(src))
    assert code == 2 and "exists: harvest never overwrites an eval set" in err
    assert (tmp_path / "again.jsonl").read_bytes() == before


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    config(tmp_path)
    src = write_records(tmp_path / "r.jsonl", records(50))
    code, _, err = harvest(tmp_path, "x.txt", "--records", str(src))
    assert code == 2 and "an eval set is a .jsonl file" in err
    code, _, err = harvest(tmp_path, "x.jsonl", "--records", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    (tmp_path / "bad.jsonl").write_text('{"request_id": "a", "ts": 1}\nnot json\n{"request_id": "b", "ts": 2}\n')
    code, _, err = harvest(tmp_path, "x.jsonl", "--records", str(tmp_path / "bad.jsonl"))
    assert code == 2 and "bad.jsonl:2 is not a request record" in err
    (tmp_path / "noq.jsonl").write_text('{"request_id": "a", "ts": 1, "question": ""}\n')
    code, _, err = harvest(tmp_path, "x.jsonl", "--records", str(tmp_path / "noq.jsonl"))
    assert code == 2 and "no request record with a question" in err and not (tmp_path / "x.jsonl").exists()
    code, _, err = harvest(tmp_path, "x.jsonl", "--records", str(src), "--size", "0")
    assert code == 2 and "--size must be at least 1" in err
    code, _, err = harvest(tmp_path, "x.jsonl", "--records", str(src), "--model", "m")
    assert code == 2 and "give one" in err
    code, _, err = harvest(tmp_path, "x.jsonl")  # the config's sink is mlflow by default
    assert code == 2 and "--model NAME" in err and "--records PATH" in err


def test_allocation_gives_short_strata_places_to_the_others() -> None:
    assert allocate({"error": 3, "flagged": 50, "slow": 50, "normal": 1000}, 100, 0.2) == \
        {"error": 3, "flagged": 20, "slow": 20, "normal": 57}
    assert allocate({"error": 3, "flagged": 5, "slow": 50, "normal": 10}, 100, 0.2) == \
        {"error": 3, "flagged": 5, "slow": 50, "normal": 10}  # fewer questions than places: all of them
    assert allocate({"error": 30, "flagged": 30, "slow": 30, "normal": 5}, 50, 0.2) == \
        {"error": 15, "flagged": 15, "slow": 15, "normal": 5}


ECHO = '''
from pytest_genai import Answer

def factory(config):
    return lambda case: Answer(text=case.question.split("?")[0].split()[-1])
'''


def test_the_harvested_set_runs_as_an_eval_with_its_own_snapshot_hash(project: Project) -> None:
    tmp = project.path
    src = write_records(tmp / "requests.jsonl", records(600, seed=3))
    (tmp / "monitor_sink").mkdir()
    config(tmp, monitor={"sink": "local", "path": str(src)})
    code, out, err = harvest(tmp, "evals/harvested.jsonl", "--size", "30")  # the config's local sink
    assert code == 0, err
    project.pytester.makepyfile(echo_pipeline=ECHO)
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == 0, result.stdout.str()
    record = json.loads((project.run_dirs()[-1] / "run.json").read_text())
    assert record["metrics"]["cases_evaluated"] == 30
    assert record["provenance"]["eval_set_hash"] in out  # the hash harvest printed is the one the eval snapshots


@pytest.mark.slow
def test_near_duplicates_by_embedding_are_one_case(tmp_path: Path) -> None:
    base = records(40, seed=9)
    phrasings = ["What is the capital of France?", "what's the capital of france?", "What is the capital city of France?",
                 "Which city is the capital of France?"]
    for i, q in enumerate(phrasings):
        base[i]["question"] = q
    src = write_records(tmp_path / "r.jsonl", base)
    config(tmp_path)
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["harvest", "--config", str(tmp_path / "genai.yaml"), "--out", str(tmp_path / "n.jsonl"),
                     "--records", str(src), "--size", "40", "--near-dup", "on"])
    assert code == 0, stderr.getvalue()
    questions = [c["question"] for c in read_set(tmp_path / "n.jsonl")]
    assert sum("France" in q or "france" in q for q in questions) < len(phrasings)
    assert "near-duplicates by all-minilm-l6-v2 embeddings" in stdout.getvalue() and "passed over" in stdout.getvalue()


def test_harvest_from_a_served_versions_traces(tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default mlflow sink: the records are the traces the served version wrote (the monitor's own writer),
    found through the registered version behind the alias."""
    from mlflow.tracking import MlflowClient

    from pytest_genai.monitor.record import MlflowTraceSink, ModelIdentity
    from pytest_genai.tracking.mlflow_client import use_tracking_uri

    monkeypatch.chdir(tmp_path)
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.create_experiment("served")
    run_id = client.create_run(exp).info.run_id
    model = client.create_logged_model(exp, name="qa", source_run_id=run_id)
    client.create_registered_model("qa-model")
    v = client.create_model_version("qa-model", f"models:/{model.model_id}", run_id=run_id,
                                    tags={"genai.eval_run_id": run_id}, model_id=model.model_id)
    client.set_registered_model_alias("qa-model", "production", v.version)
    recs = records(120, seed=4)
    for r in recs:
        r["model_id"] = model.model_id
    with use_tracking_uri(mlflow_uri):
        sink = MlflowTraceSink(ModelIdentity(model.model_id, run_id, "qa-model", v.version), exp)
        sink.write(recs)
        sink.flush()
    assert sink.written == 120 and not sink.failed
    config(tmp_path, tracking={"enabled": False, "uri": mlflow_uri})
    code, out, err = harvest(tmp_path, "evals/traffic.jsonl", "--model", "qa-model", "--alias", "production",
                             "--size", "25")
    assert code == 0, err
    cases = read_set(tmp_path / "evals/traffic.jsonl")
    by_id = {r["request_id"]: r for r in recs}
    assert len(cases) == 25 and all(c["source"]["request_id"] in by_id for c in cases)
    assert f"from the traces of qa-model v{v.version}" in out and EMAIL not in (tmp_path / "evals/traffic.jsonl").read_text()
    code, _, err = harvest(tmp_path, "evals/other.jsonl", "--model", "qa-modle")
    assert code == 2 and "qa-model" in err  # did-you-mean from the registry


def test_review_findings_size_secrets_in_the_record_unkeyed_warning_and_folder(tmp_path: Path) -> None:
    recs = records(300, seed=6)
    recs[0].update(question="password=hunter2 is my login, why?", answer="Your password hunter2 is weak", error=None)
    src = write_records(tmp_path / "r.jsonl", recs)
    config(tmp_path)
    code, out, err = harvest(tmp_path, "one.jsonl", "--records", str(src), "--size", "1")
    assert code == 0 and len(read_set(tmp_path / "one.jsonl")) == 1, err  # the rare strata's quota never exceeds --size
    assert "WARNING: the placeholders are UNKEYED" in out and "fewer than --size" not in out
    code, out, err = harvest(tmp_path, "all.jsonl", "--records", str(src), "--size", "1000")
    text = (tmp_path / "all.jsonl").read_text()
    assert code == 0 and "hunter2" not in text and "Your password *** is weak" in text  # masked where repeated bare
    assert "fewer than --size 1000" in out and "needs_expected case(s) have no gold answer" in out
    (tmp_path / "adir").mkdir()
    code, _, err = harvest(tmp_path, "adir", "--records", str(src))
    assert code == 2 and "is a folder" in err
    config(tmp_path, safety={"redact_key": "${HARVEST_KEY}"})
    import os

    os.environ["HARVEST_KEY"] = "k" * 32
    try:
        code, out, err = harvest(tmp_path, "keyed.jsonl", "--records", str(src), "--size", "5")
    finally:
        del os.environ["HARVEST_KEY"]
    assert code == 0 and "UNKEYED" not in out, err
