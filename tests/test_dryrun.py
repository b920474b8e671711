"""`--genai-dry-run` and `budget:`: the estimate before any model call, against the OpenAI-compatible stub (which
counts words, as `llm.tokenizer: words` does) and a custom pipeline that must never be called; the budget refusing
a run before any call; and after a run the estimate against the actual figures (record, terminal, metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import Project
from pytest_genai.testing.openai_stub import OpenAIStub

KEY = "sk-dry-0123456789abcdef"
CASES = [{"id": f"q{i:02d}", "question": f"What is the value of item number {i}?", "answers": [f"item{i} value"],
          "context": f"item{i} value is here, among " + "filler words " * (i % 5)} for i in range(30)]
PRICING = {"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.5}


@pytest.fixture
def api(project: Project, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    project.use_stub(stub.base_url, CASES, temperature=0.0, max_retries=0, tokenizer="words", pricing=PRICING)
    project.config["gates"] = {"error_rate": "== 0"}
    project.config["tracking"]["enabled"] = False
    project.write_config()
    return project


def figures(out: str) -> dict[str, str]:
    line = next(ln for ln in out.splitlines() if ln.startswith("dry run: total: "))
    return dict(re.findall(r"(calls|input tokens|output tokens|cost USD|wall time) ([^,]+(?:,\d{3})*)", line))


def test_a_dry_run_counts_every_prompt_calls_nothing_and_records_nothing(api: Project, stub: OpenAIStub) -> None:
    result = api.run("--genai-config", "genai.yaml", "--genai-dry-run")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert stub.request_count == 0 and api.run_dirs() == []  # no call, no run folder
    f = figures(out)
    assert f["calls"] == "30" and f["output tokens"] == "0–480"  # no baseline: up to max_tokens 16 a call
    assert "wall time n/a (no baseline run)" in out and "counted by words" in out
    dry_in = int(f["input tokens"].replace(",", ""))

    assert api.run("--genai-config", "genai.yaml").ret == 0  # the real run: the baseline of the next dry run
    actual = api.summary()["metrics"]
    assert stub.request_count == 30
    assert dry_in == actual["tokens_input_total"]  # the stub counts words: the same prompts, the same count

    again = api.run("--genai-config", "genai.yaml", "--genai-dry-run", "-k", "q0 or q1")  # a selection: its cases
    out = again.stdout.str()
    assert again.ret == 0 and stub.request_count == 30, out
    f = figures(out)
    assert f["calls"] == "20" and "expected: output tokens" in out and "wall time ~" in out  # q00-q09, q10-q19
    assert "qa.jsonl: calls 20" in out


def test_budget_refuses_a_run_before_any_call_and_warns_on_the_high_estimate(api: Project, stub: OpenAIStub) -> None:
    api.config["budget"] = {"max_usd_per_run": 0.0001}  # the input alone costs more
    api.write_config()
    result = api.run("--genai-config", "genai.yaml")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "BUDGET EXCEEDED, the run does not start: budget.max_usd_per_run $0.0001: the low estimate" in out
    assert stub.request_count == 0 and api.run_dirs() == []
    dry = api.run("--genai-config", "genai.yaml", "--genai-dry-run")  # the dry run says so too, exit 1
    assert dry.ret == 1 and "BUDGET EXCEEDED" in dry.stdout.str() and stub.request_count == 0

    api.config["budget"] = {"max_tokens_per_run": 1000}  # above the input (570), below input + 16 tokens a call (1,050)
    api.write_config()
    result = api.run("--genai-config", "genai.yaml")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "budget: budget.max_tokens_per_run 1,000: the high estimate of the run's tokens" in out
    record = api.summary()
    est, m = record["estimate"], record["metrics"]
    assert est["input_tokens"] == m["tokens_input_total"] and m["tokens_input_estimate_rel_error"] == 0.0
    assert "cost_estimate_rel_error" not in m  # no baseline: no expected cost to hold against the actual one
    assert "estimate (before any call) vs actual: cost $" in out

    api.config["budget"] = {"max_usd_per_run": 5.0}  # now with the previous run as the baseline: expected figures
    api.write_config()
    assert api.run("--genai-config", "genai.yaml", "--genai-baseline", str(api.run_dirs()[-1])).ret == 0
    m = api.summary()["metrics"]
    assert abs(m["cost_estimate_rel_error"]) <= 0.10  # within ±10% of the actual cost
    assert api.summary()["estimate"]["baseline"].startswith("run folder")


NEVER = '''
def factory(config):
    def pipeline(case):
        raise AssertionError("a dry run called the pipeline")
    return pipeline
'''


def test_a_custom_pipeline_is_not_called_and_its_prompt_template_is_counted(project: Project) -> None:
    project.pytester.makepyfile(never_pipeline=NEVER)
    project.write_prompt(template="Context: {{ context }}\\nQuestion: {{ question }}")
    project.config.update({"pipeline": "never_pipeline:factory", "prompt": {"id": "qa", "version": 1},
                           "llm": {"provider": "openai_compatible", "model_id": "m", "base_url": "http://127.0.0.1:9",
                                   "tokenizer": "approx", "max_tokens": 10, "pricing": PRICING}})
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", "--genai-dry-run")
    out = result.stdout.str()
    assert result.ret == 0, out
    f = figures(out)
    # approx: 3 + per message 3 + ceil(chars / 4); the template renders one user message per case
    expected = sum(3 + 3 + -(-len(f"Context: {c['context']}\nQuestion: {c['question']}") // 4)
                   for c in json.loads("[" + ",".join((project.path / "evals/qa.jsonl").read_text().splitlines()) + "]"))
    assert int(f["input tokens"].replace(",", "")) == expected
    assert "the prompt template rendered with each case (a custom pipeline is not called)" in out


def test_an_empty_budget_is_refused_naming_the_section(api: Project) -> None:
    api.config["budget"] = {}
    api.write_config()
    result = api.run("--genai-config", "genai.yaml")
    err = result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "genai.yaml:" in err
    assert "budget: sets no limit: give max_usd_per_run and/or max_tokens_per_run, or remove the section" in err


def test_a_bad_tokenizer_setting_is_one_clear_error(api: Project, tmp_path: Path) -> None:
    api.config["llm"]["tokenizer"] = "model"  # only for hf_local
    api.write_config()
    result = api.run("--genai-config", "genai.yaml", "--genai-dry-run")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "llm.tokenizer" in out and "only for llm.provider hf_local" in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_the_bundled_example_estimate_is_within_ten_percent(tmp_path: Path) -> None:
    """SmolLM2 + MiniLM on the CPU, eight cases of the bundled example: its own tokenizer counts the RAG prompts
    exactly, the previous run's mean output gives the expected cost."""
    import subprocess
    import sys

    from pytest_genai.testing.example_project import copy_example

    cfg = copy_example(tmp_path, model_name="dryrun-example", cases=8)
    cfg.write_text(cfg.read_text() + "\nbudget:\n  max_tokens_per_run: 100000000\n")
    base = [sys.executable, "-m", "pytest", "--genai-config", "genai.yaml", "eval_sets", "-p", "no:cacheprovider"]
    first = subprocess.run(base, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode in (0, 1), first.stdout[-3000:]
    dry = subprocess.run(base + ["--genai-dry-run"], cwd=tmp_path, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert "counted by the model's tokenizer (smollm2-135m-instruct)" in dry.stdout and "expected: output tokens" in dry.stdout
    second = subprocess.run(base, cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode in (0, 1), second.stdout[-3000:]
    runs = sorted((tmp_path / ".pytest-genai" / "runs").iterdir(), key=lambda d: d.stat().st_mtime_ns)
    record = json.loads((runs[-1] / "run.json").read_text())
    m, est = record["metrics"], record["estimate"]
    assert m["tokens_input_estimate_rel_error"] == 0.0  # the model's own tokenizer: the count generation reports
    expected_out, actual_out = est["output_tokens_expected"], m["tokens_output_total"]
    assert abs(expected_out - actual_out) <= 0.10 * actual_out  # the previous run's mean output: within ±10%
    if m.get("cost_total_usd"):
        assert abs(m["cost_estimate_rel_error"]) <= 0.10


@pytest.mark.slow
def test_the_template_count_without_transformers_equals_the_tokenizer_s(tmp_path: Path) -> None:
    """The dry run counts a local model's prompts without importing transformers (tokenizer.json through `tokenizers`,
    the chat template through jinja2): on 500 varied chats it gives exactly what the model's tokenizer encodes (as
    hf_local loads it), on the lock's transformers and on the floors'."""
    import random

    from pytest_genai.config import load_config
    from pytest_genai.llm.hf_local import load_model, load_tokenizer, tokenizer_folder, weights_sha256
    from pytest_genai.llm.tokens import chat_token_count, template_counter

    (tmp_path / "genai.yaml").write_text("version: 1\npipeline: builtin:llm\neval: {set: e.jsonl}\n"
                                         "llm: {provider: hf_local, model_id: smollm2-135m-instruct}\n")
    config = load_config(tmp_path / "genai.yaml")
    weights, folder = tokenizer_folder(config)
    if folder is None:  # the converted copy is made on first load
        load_model(weights, weights_sha256(weights))
        weights, folder = tokenizer_folder(config)
    assert folder is not None and folder != weights
    tokenizer = load_tokenizer(config)
    fast = template_counter(folder, any_class=True)
    assert fast is not None
    rng = random.Random(3)
    words = ["Item", "ledger", "value", "é", "日本", "  ", "\n", "<|im_start|>", "Passage:", "Question?", "😀", "\t"]
    for _ in range(500):
        chat = [{"role": "system", "content": " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))}] \
            if rng.random() < 0.6 else []
        chat += [{"role": rng.choice(["user", "assistant"]),
                  "content": "".join(rng.choice(words) + rng.choice([" ", "", "\n"]) for _ in range(rng.randint(1, 30)))}
                 for _ in range(rng.randint(1, 3))]
        assert fast(chat) == chat_token_count(tokenizer, chat), chat
