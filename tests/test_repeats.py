"""Repeats as statistics: with sampling (llm.temperature > 0) each repeat of a case has its own seed, the case's
verdict follows eval.pass_policy, and a run reports pass_rate, flip_rate, pass_at_k and pass_all_k."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import binom

from conftest import Project
from pytest_genai.policy import Policy, PolicyError, parse_policy
from pytest_genai.repeats import combine, mean_and_spread, repeat_seed
from pytest_genai.testing.openai_stub import WORDS, OpenAIStub
from pytest_genai.types import CaseResult

KEY = "sk-repeats-5e4d3c2b1a09f8e7"  # the conftest `stub` requires it

N = 50  # repeats per case
PROBS = (0.2, 0.5, 1.0)  # each case passes a repeat with this probability
PER_P = 10  # cases per probability

# A sampling pipeline whose pass probability per case is known: the case's tag says it; the seed draws.
SAMPLER = '''
import random

def factory(config):
    def pipeline(case, seed):
        p = float(case.tags[0].split("=")[1])
        return "yes" if random.Random(seed).random() < p else "no"
    return pipeline
'''

REVERSE = '''
def pytest_collection_modifyitems(items):
    items.reverse()
'''


def _cases() -> list[dict[str, Any]]:
    return [{"id": f"p{p}-{i}", "question": f"draw {i}?", "answers": ["yes"], "tags": [f"p={p}"],
             "expect": {"contains": "yes"}} for p in PROBS for i in range(PER_P)]


@pytest.fixture
def sampler(project: Project) -> Project:
    project.pytester.makepyfile(sampler_pipe=SAMPLER)
    project.write_cases(_cases())
    project.config.update({"pipeline": "sampler_pipe:factory", "gates": {}})
    project.config["llm"] = {"model_id": "sampler", "temperature": 0.7}
    project.config["eval"]["pass_policy"] = "majority"
    project.write_config()
    return project


def _outcome(project: Project) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics of the last run, case id -> (pass_rate, flip, passed repeats, seeds))."""
    summary = project.summary()
    cases = {r["id"]: (r["pass_rate"], r["flip"], r["repeats"]["passed"], tuple(r["repeats"]["seeds"]))
             for r in project.last_results()}
    keep = ("pass_rate", "flip_rate", "pass_at_k", "pass_all_k", "em", "f1")
    return {k: summary["metrics"][k] for k in keep}, cases


def test_pass_and_flip_rates_are_within_the_binomial_interval(sampler: Project) -> None:
    result = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", str(N), "-p", "no:randomly")
    assert result.ret == 1  # the p=0.2 cases (and about half of the p=0.5 ones) fail the majority policy
    metrics, cases = _outcome(sampler)
    assert len(cases) == len(PROBS) * PER_P
    for p in PROBS:
        passed = [cases[f"p{p}-{i}"][2] for i in range(PER_P)]
        lo, hi = binom.ppf(0.0005, N, p), binom.ppf(0.9995, N, p)  # each case's count: a 99.9% interval
        assert all(lo <= k <= hi for k in passed), (p, passed, lo, hi)
        total_lo, total_hi = binom.ppf(0.0005, N * PER_P, p), binom.ppf(0.9995, N * PER_P, p)
        assert total_lo <= sum(passed) <= total_hi, (p, sum(passed))
        for i in range(PER_P):  # pass_rate is the share; flip says 0 < share < 1
            rate, flip, k, seeds = cases[f"p{p}-{i}"]
            assert rate == pytest.approx(k / N) and flip == (0 < k < N) and len(set(seeds)) == N
    # P(a case at p=0.2 or 0.5 does not flip in 50 repeats) = 0.8**50 + 0.2**50 < 2e-5; at p=1.0 it never flips
    assert metrics["flip_rate"] == pytest.approx(2 / 3)
    assert metrics["pass_all_k"] == pytest.approx(1 / 3)  # only the p=1.0 cases pass all 50
    assert metrics["pass_at_k"] == 1.0  # P(no pass in 50 at p=0.2) = 0.8**50
    expected = sum(PROBS) / len(PROBS)
    assert abs(metrics["pass_rate"] - expected) < 0.05  # mean of 1500 draws: sd 0.011
    # the case verdict follows the majority policy
    out = result.stdout.str()
    failed = {line.split("::", 1)[1].split(" ", 1)[0] for line in out.splitlines() if line.startswith("FAILED ")}
    majority = {cid for cid, (_, _, k, _) in cases.items() if k < N // 2 + 1}
    assert failed == majority and all(c.startswith(("p0.2-", "p0.5-")) for c in failed)
    assert {c for c in majority if c.startswith("p0.2-")} == {f"p0.2-{i}" for i in range(PER_P)}
    assert "of 50 repeats passed; eval.pass_policy majority needs 26" in out
    assert f"flaky: {2 * PER_P} of {3 * PER_P} cases passed some of their sampled repeats" in out


def test_the_numbers_are_identical_on_a_rerun_under_xdist_and_in_reverse_order(sampler: Project) -> None:
    args = ("--genai-config", "genai.yaml", "--genai-repeat", "20")
    sampler.run(*args)
    first = _outcome(sampler)
    sampler.run(*args)
    assert _outcome(sampler) == first
    sampler.run(*args, "-n", "2")
    assert _outcome(sampler) == first
    sampler.pytester.makeconftest(REVERSE)
    sampler.run(*args)
    assert _outcome(sampler) == first
    sampler.run(*args, "-k", "p0.5")  # a subset: the same cases, the same seeds, the same pass rates
    _, subset = _outcome(sampler)
    assert subset == {k: v for k, v in first[1].items() if k.startswith("p0.5")}


def test_repeat_zero_is_the_single_run_and_temperature_zero_keeps_the_determinism_check(sampler: Project) -> None:
    sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "5")
    _, cases = _outcome(sampler)
    one = {r["id"]: r for r in (sampler.run("--genai-config", "genai.yaml") and sampler.last_results())}
    for cid, (_, _, _, seeds) in cases.items():
        assert seeds[0] == one[cid]["seed"] and one[cid]["pass_rate"] is None  # one run: no repeats, no pass_rate
    sampler.config["llm"]["temperature"] = 0
    sampler.write_config()
    result = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "3")
    rows = sampler.last_results()
    assert all(r["pass_rate"] is None and r["outputs_agree"] is True for r in rows)  # same seed: same draw
    assert sampler.summary()["metrics"]["determinism_rate"] == 1.0 and "flip_rate" not in sampler.summary()["metrics"]
    assert "flaky" not in result.stdout.str()


def test_eval_repeat_in_the_config_and_a_gate_on_flip_rate(sampler: Project) -> None:
    sampler.config["eval"]["repeat"] = 8
    sampler.config["gates"] = {"flip_rate": "<= 0.1"}
    sampler.config["eval"]["pass_policy"] = {"k_of_n": [1, 8]}
    sampler.write_config()
    result = sampler.run("--genai-config", "genai.yaml")
    summary = sampler.summary()
    assert summary["execution"]["repeat"] == 8 and summary["execution"]["pass_policy"] == "k_of_n [1, 8]"
    gate = next(g for g in summary["gates"] if g["metric"] == "flip_rate")
    assert gate["passed"] is False and result.ret == 1
    assert "flip_rate" in result.stdout.str()
    # the run's CIs resample cases: a case's mean over its repeats is one value
    ci = summary["cis"]["pass_rate"]
    assert ci["n"] == len(PROBS) * PER_P and ci["low"] <= summary["metrics"]["pass_rate"] <= ci["high"]
    # logged to MLflow, as every run metric
    db = sampler.mlflow_uri.removeprefix("sqlite:///")
    with sqlite3.connect(db) as con:
        logged = {k for (k,) in con.execute("SELECT key FROM latest_metrics")}
    assert {"pass_rate", "flip_rate", "pass_at_k", "pass_all_k"} <= logged


@pytest.mark.parametrize("policy, repeat, message", [
    ({"k_of_n": [2, 3]}, 5, "eval.pass_policy: k_of_n [2, 3] counts 3 repeats, but this session runs 5"),
    ({"k_of_n": [4, 3]}, 3, "k_of_n takes [k, n], two whole numbers with 1 <= k <= n"),
    ("majorty", 3, "'majorty' is not a policy — did you mean 'majority'?"),
    ({"k_of_n": [0, 3]}, 3, "k_of_n takes [k, n], two whole numbers with 1 <= k <= n (like [2, 3]), got [0, 3]"),
])
def test_a_policy_that_cannot_apply_is_a_usage_error_naming_the_line(sampler: Project, policy: Any, repeat: int,
                                                                    message: str) -> None:
    sampler.config["eval"]["pass_policy"] = policy
    sampler.write_config()
    result = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", str(repeat))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert message in err and "genai.yaml:" in err and "Traceback" not in err
    assert "eval.pass_policy: eval.pass_policy" not in err and "is not valid under any of the given schemas" not in err


def test_an_unknown_policy_is_refused_by_the_schema(sampler: Project) -> None:
    sampler.config["eval"]["pass_policy"] = "most"
    sampler.write_config()
    result = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "eval.pass_policy" in result.stderr.str()


def test_reports_list_the_flaky_cases(sampler: Project) -> None:
    result = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "6", "--genai-markdown", "summary.md",
                         "--junitxml=out.xml")
    out = result.stdout.str()
    assert "repeats:  " in out and "passed; answers: 'no' x" in out  # a failing case: what its repeats said
    assert "(means over the repeats; tokens: their sum)" in out
    assert '<property name="pass_rate"' in (sampler.path / "out.xml").read_text()
    md = (sampler.path / "summary.md").read_text()
    run_dir = sampler.run_dirs()[-1]
    html = (run_dir / "report.html").read_text()
    assert "### Flaky cases (" in md and "majority" in md
    assert "Flaky cases (" in html and "sampled, eval.pass_policy majority" in html
    flaky = [r for r in sampler.last_results() if r["flip"]]
    assert flaky and all(f"<code>{r['id']}</code>" in html for r in flaky)


def test_sampled_repeats_on_an_api_model_record_and_replay_the_same_run(project: Project, stub: OpenAIStub,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each repeat is its own seeded request (the stub appends a word drawn with the seed): a cassette keeps each,
    a replay without the server gives the same answers, pass rates and token totals."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    half = list(WORDS[: len(WORDS) // 2])
    cases = [{"id": f"q{i}", "question": f"What is item {i}?", "answers": [f"item{i}"], "context": f"item{i} value",
              "expect": {"not_contains": half}} for i in range(6)]
    project.use_stub(stub.base_url, cases, temperature=0.7, max_retries=0)
    project.config["gates"] = {}
    project.write_config()
    args = ("--genai-config", "genai.yaml", "--genai-repeat", "6", "--genai-cassette", "cassette.jsonl")
    project.run(*args, "--genai-cache", "record")
    rows = project.last_results()
    recorded = {r["id"]: (r["repeats"]["answers"], r["pass_rate"]) for r in rows}
    metrics = project.summary()["metrics"]
    assert all(len(set(answers)) > 1 for answers, _ in recorded.values())  # six seeds, not one
    assert metrics["tokens_output_total"] == sum(r["output_tokens"] for r in rows) and 0 < metrics["flip_rate"] <= 1
    calls = len([ln for ln in (project.path / "cassette.jsonl").read_text().splitlines() if ln.strip()])
    assert calls >= 6 * len(cases)
    stub.stop()
    (project.path / ".pytest-genai" / "cache.sqlite3").unlink()
    project.run(*args, "--genai-cache", "replay")
    assert {r["id"]: (r["repeats"]["answers"], r["pass_rate"]) for r in project.last_results()} == recorded
    replayed = project.summary()["metrics"]
    for name in ("pass_rate", "flip_rate", "pass_at_k", "pass_all_k", "tokens_input_total", "tokens_output_total"):
        assert replayed[name] == metrics[name], name


def test_resume_refuses_another_number_of_repeats_or_policy(sampler: Project) -> None:
    from pytest_genai.resume import Resumable, ResumeError, check_same
    from pytest_genai.runlog import read_run

    sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "3", "-k", "p1.0")
    run = Resumable(sampler.run_dirs()[-1], read_run(sampler.run_dirs()[-1]))
    p = run.record.provenance
    same = dict(config_hash=p.config_hash, eval_set_hash=p.eval_set_hash, prompt_hash=p.prompt_hash,
                env_lock_hash=p.env_lock_hash)
    check_same(run, **same, repeat=(3, "majority"))  # as it ran
    with pytest.raises(ResumeError, match="--genai-repeat: 3 then, 5 now"):
        check_same(run, **same, repeat=(5, "majority"))
    with pytest.raises(ResumeError, match="eval.pass_policy: majority then, all now"):
        check_same(run, **same, repeat=(3, "all"))


ERRING = '''
import random

def factory(config):
    def pipeline(case, seed):
        draw = random.Random(seed).random()
        if draw < 0.4:
            raise TimeoutError("the model took too long")
        return "yes"
    return pipeline
'''


def test_an_error_in_some_repeats_counts_in_error_rate(sampler: Project) -> None:
    """A case whose policy passes despite an errored repeat still counts it: error_rate is the share of calls."""
    sampler.pytester.makepyfile(erring_pipe=ERRING)
    sampler.config["pipeline"] = "erring_pipe:factory"
    sampler.config["gates"] = {"error_rate": "== 0"}
    sampler.write_config()
    result = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "4")
    rows = sampler.last_results()
    calls = sum(r["repeats"]["n"] for r in rows)
    errored = sum(r["repeats"]["errors"] for r in rows)
    assert 0 < errored < calls
    assert sampler.summary()["metrics"]["error_rate"] == pytest.approx(errored / calls)  # n is the same for every case
    assert result.ret == 1 and "GATES FAILED: error_rate=" in result.stdout.str()
    hidden = [r for r in rows if r["error"] is None and r["repeats"]["errors"]]
    assert hidden and all(r["repeats"]["first_error"].startswith("TimeoutError: the model took too long") for r in hidden)
    assert all("Traceback" not in f for r in rows for f in r["expect_failures"])  # one line, not a trace


def test_the_start_refuses_a_repeat_gate_the_session_cannot_compute_and_the_header_says_what_repeats_do(
        sampler: Project) -> None:
    sampler.config["gates"] = {"flip_rate": "<= 0.1"}
    sampler.write_config()
    once = sampler.run("--genai-config", "genai.yaml")
    assert once.ret == pytest.ExitCode.USAGE_ERROR and sampler.run_dirs() == []  # nothing ran
    err = once.stderr.str()
    assert "gates.flip_rate" in err and "this session runs each case once" in err and "genai.yaml:" in err
    sampler.config["llm"]["temperature"] = 0
    sampler.write_config()
    greedy = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "3")
    assert greedy.ret == pytest.ExitCode.USAGE_ERROR and "the determinism check" in greedy.stderr.str()
    sampler.config["gates"] = {}
    sampler.write_config()
    out = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "3").stdout.str()
    assert "genai: repeats: 3 a case with the case's seed (llm.temperature 0: the determinism check, outputs must " \
           "agree); eval.pass_policy does not apply" in out
    sampler.config["llm"]["temperature"] = 0.7
    sampler.write_config()
    out = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "3").stdout.str()
    assert "genai: repeats: 3 a case, each with its own seed (llm.temperature 0.7); a case passes by eval.pass_policy " \
           "majority" in out
    tags = sampler.summary()["tags"]
    assert tags["genai.repeat"] == "3" and tags["genai.pass_policy"] == "majority"


def test_a_baseline_with_other_repeats_is_compared_without_the_metrics_that_depend_on_them(sampler: Project) -> None:
    sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "3")
    base = sampler.run_dirs()[-1]
    alike = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "3", "--genai-baseline", str(base))
    assert "pass_at_k" in sampler.summary()["baseline"]["deltas"] and "repeats: the baseline ran" not in alike.stdout.str()
    other = sampler.run("--genai-config", "genai.yaml", "--genai-repeat", "5", "--genai-baseline", str(base))
    b = sampler.summary()["baseline"]
    assert b["repeat"] == 3 and "pass_rate" in b["deltas"]  # the chance a single run passes: comparable
    assert not {"flip_rate", "pass_at_k", "pass_all_k"} & set(b["deltas"])
    assert ("repeats: the baseline ran 3 repeats a case (sampled, eval.pass_policy majority), this run 5 repeats a case"
            in other.stdout.str())


def test_a_replay_miss_on_a_repeat_is_the_case_s_error(project: Project, stub: OpenAIStub,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A cassette recorded with 2 repeats replayed with 3: the third repeat's miss is no outcome of the model."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cases = [{"id": f"q{i}", "question": f"What is item {i}?", "answers": [f"item{i}"], "context": f"item{i} value"}
             for i in range(3)]
    project.use_stub(stub.base_url, cases, temperature=0.7, max_retries=0)
    project.config["gates"] = {}
    project.write_config()
    args = ("--genai-config", "genai.yaml", "--genai-cassette", "cassette.jsonl")
    project.run(*args, "--genai-repeat", "2", "--genai-cache", "record")
    stub.stop()
    (project.path / ".pytest-genai" / "cache.sqlite3").unlink()
    result = project.run(*args, "--genai-repeat", "3", "--genai-cache", "replay")
    rows = project.last_results()
    assert result.ret == 1 and all(r["error"] and "CacheMiss" in r["error"] for r in rows)
    assert project.summary()["metrics"]["error_rate"] == 1.0


# -- the plain functions -----------------------------------------------------------------------------------------

def test_repeat_seeds_depend_on_the_case_seed_and_r_only() -> None:
    assert repeat_seed(123, 0) == 123
    seeds = [repeat_seed(123, r) for r in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**31 for s in seeds)
    assert repeat_seed(123, 7) == repeat_seed(123, 7) != repeat_seed(124, 7)


def test_policies() -> None:
    assert parse_policy(None, 3) == Policy("all") and parse_policy("majority", 4).needed(4) == 3
    assert parse_policy({"k_of_n": [2, 3]}, 3).passes([True, False, True])
    assert not parse_policy("all", 3).passes([True, False, True])
    assert parse_policy("majority", 3).passes([True, False, True]) and not parse_policy("majority", 2).passes([True, False])
    for bad in ("most", {"k_of_n": [0, 3]}, {"k_of_n": [True, 3]}, {"k_of_n": [1, 2], "x": 1}):
        with pytest.raises(PolicyError):
            parse_policy(bad, 3)


def _result(i: int, *, em: float, error: str | None = None, failures: tuple[str, ...] = (), flags: Any = None,
            tokens: int = 10, scores: Any = None) -> CaseResult:
    return CaseResult("c", "q?", None if error else f"answer {i}", ("a",), em, em, 100.0 + i, tokens, tokens, 0.5,
                      1000 + i, error=error, expect_failures=failures, safety_flags=flags, scores=scores or {})


def test_combine_means_spreads_sums_and_the_verdict() -> None:
    rs = [_result(0, em=1.0, flags=("EMAIL",), scores={"judge": 0.5}), _result(1, em=0.0, failures=("expected x",)),
          _result(2, em=1.0, flags=("PHONE",), scores={"judge": 1.0})]
    out = combine(rs, Policy("majority"))
    assert out.em == pytest.approx(2 / 3) and out.repeats["spread"]["em"] == pytest.approx(mean_and_spread([1, 0, 1])[1])
    assert out.latency_ms == 100.0 and out.repeats["latencies_ms"] == [100.0, 101.0, 102.0]  # one call's: the first
    assert out.input_tokens == 30 and out.cost_usd == pytest.approx(1.5)
    assert out.pass_rate == pytest.approx(2 / 3) and out.flip is True and out.expect_failures == ()
    assert out.safety_flags == ("EMAIL", "PHONE") and out.scores == {"judge": 0.75}
    assert out.answer == "answer 0" and out.seed == 1000 and out.repeats["seeds"] == [1000, 1001, 1002]
    strict = combine(rs, Policy("all"))
    assert strict.expect_failures == ("2 of 3 repeats passed; eval.pass_policy all needs 3 (repeat 2, seed 1001: "
                                      "expected x)",)
    errored = combine([_result(i, em=0.0, error="RuntimeError: down") for i in range(3)], Policy("all"))
    assert errored.error == "RuntimeError: down" and errored.pass_rate == 0 and errored.flip is False
    assert math.isnan(errored.latency_ms)


def test_a_record_with_repeats_reads_back(tmp_path: Path) -> None:
    out = combine([_result(0, em=1.0), _result(1, em=0.0, failures=("no",))], Policy("all"))
    again = CaseResult.from_dict(json.loads(json.dumps(out.to_dict())))
    assert again == out
