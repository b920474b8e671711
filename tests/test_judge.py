"""The LLM judge of pref_win_rate: verdict parsing and the both-orders mapping; its config (schema, did-you-mean,
temperature 0, prompt file, variables, the prompt lock); the judge against a real OpenAI-compatible HTTP server on
127.0.0.1 that judges deterministically (prefers the answer holding the gold string) with a planted position bias
and planted unparseable replies; record, then replay with the server stopped: the same verdicts."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Project
from pytest_genai.compare.comparison import compare_runs
from pytest_genai.compare.judge import (TAG_PREF_JUDGE, TAG_PREF_JUDGE_CACHE_HITS, TAG_PREF_JUDGE_PROMPT_HASH,
                                        F1Judge, JudgeError, LLMJudge, UnavailableJudge, combine, load_judge_spec,
                                        parse_verdict)
from pytest_genai.compare.measure import CompareOptions
from pytest_genai.compare.pairing import pair_cases, pref_win_rate_f1
from pytest_genai.config import ConfigError, load_config
from pytest_genai.prompts import load_prompt
from pytest_genai.runtime import Runtime
from pytest_genai.sanitize import Sanitizer
from pytest_genai.testing.openai_stub import completion
from pytest_genai.types import CaseResult

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-judge-4f3e2d1c0b9a8776"
JUDGE_PROMPT_HASH = "1200d247949b38758d0d6e854d3f3072ad8e411b7edc3a21ecff6aacf31364c0"  # prompts/judge_pairwise.yaml
STICKY, MUMBLE = "(sticky)", "(mumble)"  # the judge always answers "A" / something that is no verdict


# -- a judge on a real HTTP server -------------------------------------------------------------------------
def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def judge_reply(content: str) -> str:
    """What the stub judge says about a rendered judge_pairwise prompt: the answer holding a gold string wins
    (both or neither: tie); a STICKY question always gets "A" (position bias), a MUMBLE one no verdict."""
    question = between(content, "Question:", "\n")
    if STICKY in question:
        return "A"
    if MUMBLE in question:
        return "Well, both answers have some merit."
    gold = [g.strip().lower() for g in between(content, "Reference answers:", "\n").split(" | ")]
    a = between(content, "[Answer A]", "[End of answer A]").lower()
    b = between(content, "[Answer B]", "[End of answer B]").lower()
    a_has, b_has = any(g in a for g in gold), any(g in b for g in gold)
    return "A" if a_has and not b_has else "B." if b_has and not a_has else "tie"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: a stopped server is really down
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        content = body["messages"][-1]["content"]
        judged = "[Answer A]" in content
        with self.server.lock:
            self.server.log.append((body["model"], judged, self.headers.get("Authorization")))
        if judged:
            text = judge_reply(content)
            reply = completion(body)
            reply["choices"][0]["message"]["content"] = text
            reply["usage"]["completion_tokens"] = len(text.split())
        else:
            reply = completion(body)  # the pipeline's answers: the OpenAI stub's
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections under concurrent clients
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.log: list[tuple[str, bool, str | None]] = []


class JudgeStub:
    def __init__(self) -> None:
        self.server: _Server | None = _Server()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def judge_calls(self) -> list[tuple[str, bool, str | None]]:
        assert self.server is not None
        with self.server.lock:
            return [r for r in self.server.log if r[1]]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None


@pytest.fixture
def stub() -> Iterator[JudgeStub]:
    s = JudgeStub()
    yield s
    s.stop()


# -- verdicts ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, verdict", [
    ("A", "A"), ("B", "B"), ("tie", "tie"), ("Tie", "tie"), ("TIE.", "tie"), ("  B\n", "B"), ("A.", "A"),
    ("**B**", "B"), ("(A)", "A"), ("'B'", "B"), ("A because it names the gold answer", "A"), ("B: shorter", "B"),
    ("a", None), ("b", None), ("a better answer is B", None), ("Answer A", None), ("AB", None), ("ties", None),
    ("C", None), ("", None), ("   ", None), (None, None), ("Both", None),
])
def test_parse_verdict_reads_the_first_token_strictly(text: str | None, verdict: str | None) -> None:
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize("ab, ba, score", [
    ("A", "B", 1.0),      # candidate preferred as A and as B
    ("B", "A", 0.0),      # baseline preferred in both orders
    ("A", "A", 0.5),      # position bias: whatever is shown first wins -> a tie
    ("B", "B", 0.5),
    ("tie", "tie", 0.5), ("A", "tie", 0.5), ("tie", "B", 0.5), ("B", "tie", 0.5), ("tie", "A", 0.5),
    (None, "B", 0.5), ("A", None, 0.5), (None, None, 0.5),  # unparsed counts as a tie
])
def test_both_orders_map_to_one_score(ab: str | None, ba: str | None, score: float) -> None:
    assert combine(ab, ba) == score


def result(cid: str, answer: str | None, f1: float, question: str = "", answers: tuple[str, ...] = ("gold",)) -> CaseResult:
    return CaseResult(cid, question or f"Question {cid}?", answer, answers, float(f1 == 1.0), f1, 10.0, 1, 1, 0.0, 1,
                      error=None if answer is not None else "boom")


def test_the_f1_judge_is_pref_win_rate_f1() -> None:
    cand = [result("a", "x", 1.0), result("b", "x", 0.5), result("c", None, 0.0), result("d", "x", 0.2)]
    base = [result("a", "y", 0.0), result("b", "y", 0.5), result("c", "y", 0.5), result("d", None, 0.0)]
    pairing = pair_cases(cand, base, intersect=False)
    verdicts = F1Judge().judge(pairing.pairs)
    assert verdicts.wins == pref_win_rate_f1(pairing)[1] == (1.0, 0.5, 0.0, 1.0)
    assert verdicts.rate == pytest.approx(2.5 / 4) and verdicts.judge == "f1"
    assert compare_runs(cand, base, seed=0).to_dict()["pref_win_rate"]["judge"] == "f1"


def test_a_judge_that_fails_leaves_pref_win_rate_out_and_keeps_the_rest() -> None:
    cand = [result(f"q{i}", "x", 1.0 if i % 2 else 0.0) for i in range(20)]
    base = [result(f"q{i}", "y", 0.0) for i in range(20)]
    comp = compare_runs(cand, base, seed=0, judge=UnavailableJudge("no judge model here"))
    assert comp.judge_error == "no judge model here" and comp.pref_judge == "llm"
    assert comp.pref_win_rate != comp.pref_win_rate and not comp.pref_win_rate_ci.finite  # NaN
    assert comp.metrics["f1"].delta == pytest.approx(0.5)  # the comparison itself stands
    doc = comp.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["pref_win_rate"]["error"] == "no judge model here" and doc["pref_win_rate"]["value"] is None


# -- config ------------------------------------------------------------------------------------------------
def judge_block(base_url: str = "http://127.0.0.1:9/v1", **llm: Any) -> dict[str, Any]:
    return {"llm": {"provider": "openai_compatible", "model_id": "judge-model", "base_url": base_url,
                    "api_key": "${OPENAI_API_KEY}", "max_tokens": 4, "timeout_s": 5, "max_retries": 0, **llm},
            "prompt": {"id": "judge_pairwise", "version": 1}}


def write_config(folder: Path, judge: Any, *, prompt: bool = True, text: str | None = None) -> Path:
    (folder / "prompts").mkdir(exist_ok=True)
    if prompt:
        shutil.copyfile(REPO / "prompts" / "judge_pairwise.yaml", folder / "prompts" / "judge_pairwise.yaml")
    path = folder / "genai.yaml"
    data = {"version": 1, "seed": 7, "pipeline": "builtin:llm", "eval": {"set": "x.jsonl"}, "compare": {"judge": judge}}
    path.write_text(text if text is not None else yaml.safe_dump(data, sort_keys=False))
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_judge_spec(load_config(path, environ={"OPENAI_API_KEY": KEY}))
    return info.value


def test_the_judge_llm_block_has_the_keys_of_the_llm_section() -> None:
    from pytest_genai.config.schema import schema

    top = schema()["properties"]["llm"]["properties"]
    judge = schema()["properties"]["compare"]["properties"]["judge"]["properties"]["llm"]
    assert {k: v for k, v in judge["properties"].items() if k != "temperature"} == {k: v for k, v in top.items()
                                                                                     if k != "temperature"}
    assert judge["properties"]["temperature"]["maximum"] == 0 and judge["required"] == ["provider", "model_id"]


def test_a_judge_config_loads_and_reads_its_own_llm_block(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, judge_block()), environ={"OPENAI_API_KEY": KEY})
    spec = load_judge_spec(cfg)
    assert spec is not None and spec.name == "llm:judge-model" and spec.identity == "llm:judge-model@judge_pairwise@1"
    assert spec.prompt.hash == JUDGE_PROMPT_HASH
    view = spec.config
    assert view.get("llm.model_id") == "judge-model" and view.get("llm.api_key") == KEY  # the secret, resolved
    assert view.get("llm.temperature") == 0.0 and view.get("llm.pricing.input_per_1k_tokens") == 0.0  # defaults
    assert view.get("seed") == 7 and view.public["llm"]["api_key"] == "${OPENAI_API_KEY}"
    assert "compare.judge.llm.model_id" in str(view.error("llm.model_id", "x"))
    assert cfg.hash == load_config(write_config(tmp_path, "f1"), environ={}).hash  # compare stays out of config_hash
    assert cfg.params()["compare.judge.llm.model_id"] == "judge-model" and "compare.judge.llm.api_key" not in cfg.params()
    options = CompareOptions.from_config(cfg)
    assert options.judge is not None and options.judge_problem is None
    assert load_judge_spec(load_config(write_config(tmp_path, "f1"), environ={})) is None


def test_temperature_above_zero_is_refused_at_config_load(tmp_path: Path) -> None:
    path = write_config(tmp_path, judge_block(temperature=0.7))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"OPENAI_API_KEY": KEY})
    (problem,) = info.value.problems
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "temperature" in t)
    assert problem.key == "compare.judge.llm.temperature" and problem.line == line
    assert re.search(rf"genai.yaml:{line}: compare.judge.llm.temperature: (0.7 is greater than the maximum of 0"
                     r"|must be 0 for a judge \(got 0.7\))", str(info.value))  # the schema's words, or validate's own


def test_a_config_built_without_the_schema_is_checked_too(tmp_path: Path) -> None:
    from pytest_genai.config import GenaiConfig

    path = write_config(tmp_path, "f1")
    hot = GenaiConfig(path, {"compare": {"judge": judge_block(temperature=0.7)}}, {})
    with pytest.raises(ConfigError, match=r"compare.judge.llm.temperature: must be 0 for a judge \(got 0.7\)"):
        load_judge_spec(hot)
    with pytest.raises(ConfigError, match=r"compare.judge: must be 'f1' or a mapping"):
        load_judge_spec(GenaiConfig(path, {"compare": {"judge": ["f1"]}}, {}))


def test_unknown_keys_and_values_get_did_you_mean(tmp_path: Path) -> None:
    block = judge_block()
    block["llm"]["modle_id"] = block["llm"].pop("model_id")
    block["prompt"]["versoin"] = block["prompt"].pop("version")
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, block), environ={"OPENAI_API_KEY": KEY})
    text = str(info.value)
    assert "unknown key 'compare.judge.llm.modle_id' — did you mean 'compare.judge.llm.model_id'?" in text
    assert "unknown key 'compare.judge.prompt.versoin' — did you mean 'compare.judge.prompt.version'?" in text
    assert "compare.judge.llm: 'model_id' is a required property" in text
    with pytest.raises(ConfigError, match=r"compare.judge: 'gpt-4' is not one of \['f1'\]"):
        load_config(write_config(tmp_path, "gpt-4"), environ={})
    with pytest.raises(ConfigError, match=r"compare.judge.llm.api_key: must be an environment reference"):
        load_config(write_config(tmp_path, judge_block(api_key="sk-raw")), environ={})
    err = config_error(write_config(tmp_path, judge_block(provider="openai_compatibel")))
    assert err.problems[0].key == "compare.judge.llm.provider" and "did you mean 'openai_compatible'?" in str(err)


def test_a_missing_judge_prompt_names_the_key_and_the_file(tmp_path: Path) -> None:
    err = config_error(write_config(tmp_path, judge_block(), prompt=False))
    (problem,) = err.problems
    assert problem.key == "compare.judge.prompt.id" and problem.line is not None
    assert "the judge prompt: prompt 'judge_pairwise' not found: no file" in problem.message
    assert str(tmp_path / "prompts" / "judge_pairwise.yaml") in problem.message
    cfg = load_config(write_config(tmp_path, judge_block(), prompt=False), environ={"OPENAI_API_KEY": KEY})
    options = CompareOptions.from_config(cfg)  # at session end: never raises, the problem is kept for the report
    assert options.judge is None and "compare.judge.prompt.id" in (options.judge_problem or "")
    block = judge_block()
    block["prompt"]["version"] = 2
    assert "bump prompt.version" in str(config_error(write_config(tmp_path, block)))


def test_a_judge_prompt_must_show_both_answers_and_read_only_judge_variables(tmp_path: Path) -> None:
    path = write_config(tmp_path, judge_block())
    prompt = tmp_path / "prompts" / "judge_pairwise.yaml"
    prompt.write_text("id: judge_pairwise\nversion: 1\ntemplate: 'Q: {{ question }} A: {{ answer_a }} ctx {{ context }}'\n")
    err = config_error(path)
    assert err.problems[0].key == "compare.judge.prompt.id" and "reads context" in str(err)
    prompt.write_text("id: judge_pairwise\nversion: 1\ntemplate: 'Q: {{ question }} A: {{ answer_a }}'\n")
    assert "never shows answer_b" in str(config_error(path))


def test_an_unbumped_edit_of_the_judge_prompt_is_caught_by_the_lock(tmp_path: Path) -> None:
    path = write_config(tmp_path, judge_block())
    (tmp_path / "prompts.lock.json").write_text(json.dumps({"judge_pairwise@1": "0" * 64}))
    err = config_error(path)
    assert err.problems[0].key == "compare.judge.prompt.version" and "edited without a version bump" in str(err)
    # the bundled prompt's hash is pinned here and (once locked) in the repository's lock
    lock = json.loads((REPO / "prompts.lock.json").read_text())
    assert lock.get("judge_pairwise@1", JUDGE_PROMPT_HASH) == JUDGE_PROMPT_HASH
    assert load_prompt(REPO / "prompts", "judge_pairwise", 1).hash == JUDGE_PROMPT_HASH


# -- the LLM judge on a real server, through the real response cache -----------------------------------------
def judged_pairs() -> tuple[list[CaseResult], list[CaseResult], dict[str, float]]:
    """Candidate and baseline results with the score each case must get, by construction."""
    rows = [  # id, question marker, candidate answer, baseline answer, expected score
        ("win", "", "it is w1x", "no idea", 1.0),
        ("loss", "", "no idea", "w2x of course", 0.0),
        ("both", "", "w3x", "w3x indeed", 0.5),
        ("neither", "", "no", "idea", 0.5),
        ("biased", STICKY, "w5x", "no idea", 0.5),   # the judge says "A" in both orders
        ("garbled", MUMBLE, "w6x", "no idea", 0.5),   # no verdict in either order
        ("cand-error", "", None, "w7x", 0.0),        # no call: the F1 judge (0 vs 1)
        ("both-error", "", None, None, 0.5),
    ]
    cand, base, expected = [], [], {}
    for i, (cid, marker, a, b, score) in enumerate(rows, 1):
        q = f"Which word is item {i}? {marker}".strip()
        cand.append(result(cid, a, 1.0 if a and f"w{i}x" in a else 0.0, q, (f"w{i}x",)))
        base.append(result(cid, b, 1.0 if b and f"w{i}x" in b else 0.0, q, (f"w{i}x",)))
        expected[cid] = score
    return cand, base, expected


def llm_judge(tmp_path: Path, stub: JudgeStub, mode: str, **llm: Any) -> LLMJudge:
    cfg = load_config(write_config(tmp_path, judge_block(stub.base_url, **llm)), environ={"OPENAI_API_KEY": KEY})
    spec = load_judge_spec(cfg)
    assert spec is not None
    return LLMJudge(spec, runtime=Runtime(mode, tmp_path / "cache.sqlite3"), sanitizer=Sanitizer.from_config(cfg), seed=7)


def test_the_llm_judge_scores_both_orders_and_replays_without_the_server(tmp_path: Path, stub: JudgeStub) -> None:
    cand, base, expected = judged_pairs()
    pairs = pair_cases(cand, base, intersect=False).pairs
    verdicts = llm_judge(tmp_path, stub, "read-write").judge(pairs)
    assert dict(zip([c.id for c in cand], verdicts.wins)) == expected
    assert verdicts.judge == "llm:judge-model" and verdicts.rate == pytest.approx(sum(expected.values()) / len(expected))
    d = verdicts.details
    assert len(stub.judge_calls) == d["judge_calls"] == 2 * 6  # the two error pairs cost no call
    assert all(auth == f"Bearer {KEY}" and model == "judge-model" for model, _, auth in stub.judge_calls)
    assert d["judge_verdicts"]["win"] == ["A", "B."] and d["judge_verdicts"]["loss"] == ["B.", "A"]
    assert d["judge_verdicts"]["biased"] == ["A", "A"] and d["judge_verdicts"]["both"] == ["tie", "tie"]
    assert d["judge_unparsed"] == 2 and d["judge_disagreements"] == 1  # garbled twice; biased disagrees with itself
    assert d["judge_f1_fallback"] == ["cand-error", "both-error"] and "cand-error" not in d["judge_verdicts"]
    assert d["judge_prompt"] == "judge_pairwise@1" and d["judge_tokens_output"] > 0
    assert verdicts.tags[TAG_PREF_JUDGE] == "llm:judge-model@judge_pairwise@1"
    assert verdicts.tags[TAG_PREF_JUDGE_PROMPT_HASH] == d["judge_prompt_hash"]
    assert verdicts.tags[TAG_PREF_JUDGE_CACHE_HITS] == "0"

    again = llm_judge(tmp_path, stub, "read-write").judge(pairs)  # answered from the cache: no new call
    assert again.wins == verdicts.wins and len(stub.judge_calls) == 12 and again.tags[TAG_PREF_JUDGE_CACHE_HITS] == "12"
    pooled = llm_judge(tmp_path, stub, "record", concurrency=4).judge(pairs)  # a pool, calls made anew
    assert pooled.wins == verdicts.wins and pooled.details["judge_verdicts"] == d["judge_verdicts"]
    assert len(stub.judge_calls) == 24

    stub.stop()
    replayed = llm_judge(tmp_path, stub, "replay").judge(pairs)
    assert replayed.wins == verdicts.wins and replayed.details == d
    changed = [c if c.id != "win" else result("win", "it is w1x!", 1.0, c.question, c.answers) for c in cand]
    with pytest.raises(JudgeError, match=r"judging case 'win' \(candidate as A\) with llm:judge-model failed: "
                                         r"CacheMiss: replay: no recorded response for case 'win \(judge, candidate as A\)'"):
        llm_judge(tmp_path, stub, "replay").judge(pair_cases(changed, base, intersect=False).pairs)
    with pytest.raises(JudgeError, match="judging case 'win'.*failed: LLMError: openai_compatible: POST"):
        llm_judge(tmp_path, stub, "off").judge(pairs)  # live, and the server is down


def as_baseline(base: list[CaseResult]) -> Any:
    from pytest_genai.compare.baseline import Baseline
    from pytest_genai.runlog import Provenance, RunRecord

    record = RunRecord(2, "complete", "2026-12-01T10:00:00Z", "2026-12-01T10:01:00Z", Provenance(eval_set_hash="e"),
                       results=tuple(base))
    return Baseline("runs/base", "run folder", record)


def test_measure_passes_the_runtime_to_the_judge_and_reports_its_failure(tmp_path: Path, stub: JudgeStub) -> None:
    from pytest_genai.compare.measure import measure
    from pytest_genai.metrics.registry import aggregate

    cand, base, expected = judged_pairs()
    cfg = load_config(write_config(tmp_path, judge_block(stub.base_url)), environ={"OPENAI_API_KEY": KEY})
    options, san = CompareOptions.from_config(cfg), Sanitizer.from_config(cfg)

    def run(mode: str, opts: CompareOptions = options) -> Any:
        return measure(cand, aggregate(cand, {}), {"pref_win_rate": ">= 0.3"}, seed=7, options=opts,
                       baseline=as_baseline(base), eval_set_hash="e", runtime=Runtime(mode, tmp_path / "c.sqlite3"),
                       sanitizer=san)

    recorded = run("record")
    assert recorded.metrics["pref_win_rate"] == pytest.approx(sum(expected.values()) / len(expected))
    assert recorded.tags[TAG_PREF_JUDGE] == "llm:judge-model@judge_pairwise@1" and not recorded.errors
    assert recorded.comparison is not None and recorded.comparison["pref_win_rate"]["judge"] == "llm:judge-model"
    stub.stop()
    replayed = run("replay")
    assert replayed.metrics["pref_win_rate"] == recorded.metrics["pref_win_rate"]
    assert replayed.cis["pref_win_rate"] == recorded.cis["pref_win_rate"]
    assert replayed.tags[TAG_PREF_JUDGE_CACHE_HITS] == "12"

    (tmp_path / "prompts" / "judge_pairwise.yaml").unlink()  # set up at session end: reported, never raised
    broken = run("replay", CompareOptions.from_config(cfg))
    assert "pref_win_rate" not in broken.metrics and "pref_win_rate" not in broken.cis
    (error,) = broken.errors
    assert error.startswith("pref_win_rate: the judge (llm) failed, so it is not reported:") and "compare.judge.prompt.id" in error
    (gate,) = broken.gates
    assert not gate.passed and broken.metrics["f1_delta"] == replayed.metrics["f1_delta"]  # the rest stands


# -- end to end: pytest runs, a baseline, a judged candidate, its replay ---------------------------------
N = 30
PROMPTS = {"base": "Context: {{ question }}", "cand": "Context: {{ context }}"}  # base answers from the question


def e2e_cases() -> list[dict[str, Any]]:
    out = []
    for i in range(N):
        gold, kind = f"w{i}x", i % 5
        context = f"{gold} is the word" if kind in (0, 2, 4) else f"nothing names item {i}"
        question = f"{gold} names item {i}?" if kind in (1, 2) else f"Which word names item {i}?"
        if kind == 4:
            question += f" {STICKY}"
        if i in (10, 20):
            question += f" {MUMBLE}"
        out.append({"id": f"q{i:02d}", "question": question, "answers": [gold], "context": context})
    return out


@pytest.fixture
def judged(project: Project, stub: JudgeStub, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    project.write_cases(e2e_cases())
    for pid, template in PROMPTS.items():
        project.write_prompt(pid, template=template)
    shutil.copyfile(REPO / "prompts" / "judge_pairwise.yaml", project.path / "prompts" / "judge_pairwise.yaml")
    project.config.update({
        "pipeline": "builtin:llm",
        "llm": {"provider": "openai_compatible", "base_url": stub.base_url, "api_key": "${OPENAI_API_KEY}",
                "model_id": "stub-model", "max_tokens": 16, "max_retries": 0},
        "gates": {"error_rate": "== 0", "pref_win_rate": ">= 0.3"},
        "tracking": {"enabled": False, "results_dir": "runs"},
    })
    project.write_config("base.yaml", prompt={"id": "base", "version": 1})
    block = judge_block(stub.base_url, pricing={"input_per_1k_tokens": 1.0, "output_per_1k_tokens": 2.0})
    project.write_config("cand.yaml", prompt={"id": "cand", "version": 1}, compare={"judge": block})
    return project


def expected_wins(cand: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The score of each case counted from the two results files and the planted markers."""
    out = {}
    for cid, c in cand.items():
        gold = c["answers"][0].lower()
        c_has, b_has = gold in c["answer"].lower(), gold in base[cid]["answer"].lower()
        if STICKY in c["question"] or MUMBLE in c["question"] or c_has == b_has:
            out[cid] = 0.5
        else:
            out[cid] = 1.0 if c_has else 0.0
    return out


def by_id(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}


def test_pref_win_rate_by_the_llm_judge_end_to_end_then_replayed(judged: Project, stub: JudgeStub) -> None:
    base_run = judged.run("--genai-config", "base.yaml")
    assert base_run.ret == 0, base_run.stdout.str()
    base_dir = judged.run_dirs()[-1]
    rec = judged.run("--genai-config", "cand.yaml", "--genai-baseline", str(base_dir), "--genai-cache", "record",
                     "--genai-cassette", "judged.jsonl")
    assert rec.ret == 0, rec.stdout.str()
    run_dir = judged.run_dirs()[-1]
    cand, base = by_id(run_dir), by_id(base_dir)
    wins = expected_wins(cand, base)
    assert set(wins.values()) == {0.0, 0.5, 1.0}  # the planted kinds all occur
    record = json.loads((run_dir / "run.json").read_text())
    assert record["metrics"]["pref_win_rate"] == pytest.approx(sum(wins.values()) / N)
    f1_count = sum(1.0 if c["f1"] > base[i]["f1"] else 0.5 if c["f1"] == base[i]["f1"] else 0.0 for i, c in cand.items())
    assert record["metrics"]["pref_win_rate"] != pytest.approx(f1_count / N)  # not the F1 judge's number
    ci = record["cis"]["pref_win_rate"]
    assert ci["low"] < record["metrics"]["pref_win_rate"] < ci["high"] and ci["n"] == N
    assert record["metrics"]["pref_win_rate_ci_low"] == ci["low"]
    gate = next(g for g in record["gates"] if g["metric"] == "pref_win_rate")
    assert gate["passed"] and not record["errors"]

    block = json.loads((run_dir / "comparison.json").read_text())["pref_win_rate"]
    assert block["judge"] == "llm:judge-model" and block["judge_prompt"] == "judge_pairwise@1"
    sticky = [i for i, c in cand.items() if STICKY in c["question"]]
    assert block["judge_unparsed"] == 4 and block["judge_disagreements"] == len(sticky)
    assert all(block["judge_verdicts"][i] == ["A", "A"] for i in sticky) and len(block["judge_verdicts"]) == N
    assert block["judge_cost_usd"] == pytest.approx((block["judge_tokens_input"] * 1.0 + block["judge_tokens_output"] * 2.0) / 1000)
    assert len(stub.judge_calls) == 2 * N
    assert record["tags"][TAG_PREF_JUDGE] == "llm:judge-model@judge_pairwise@1"
    assert record["tags"][TAG_PREF_JUDGE_PROMPT_HASH] == block["judge_prompt_hash"]
    assert record["params"]["compare.judge.llm.model_id"] == "judge-model"
    assert not [p for p in run_dir.rglob("*") if p.is_file() and KEY in p.read_text(errors="replace")]

    cassette = [json.loads(line) for line in (judged.path / "judged.jsonl").read_text().splitlines()]
    assert sum(e["request"]["model"] == "judge-model" for e in cassette) == 2 * N and len(cassette) == 3 * N

    stub.stop()  # replay: no server; the verdicts come from the cache the record run wrote, then from the cassette
    for args in ((), ("--genai-cassette", "judged.jsonl")):
        if args:
            (judged.path / ".pytest-genai" / "cache.sqlite3").unlink()
        rep = judged.run("--genai-config", "cand.yaml", "--genai-baseline", str(base_dir), "--genai-cache", "replay", *args)
        assert rep.ret == 0, rep.stdout.str()
        again = judged.run_dirs()[-1]
        assert again != run_dir
        assert json.loads((again / "comparison.json").read_text())["pref_win_rate"] == block
        replayed = json.loads((again / "run.json").read_text())
        assert replayed["metrics"]["pref_win_rate"] == record["metrics"]["pref_win_rate"] and not replayed["errors"]
        assert replayed["cis"]["pref_win_rate"] == record["cis"]["pref_win_rate"]
        assert replayed["tags"][TAG_PREF_JUDGE_CACHE_HITS] == str(2 * N)
        run_dir = again


def test_a_missing_judge_prompt_stops_the_run_before_any_case(judged: Project, stub: JudgeStub) -> None:
    (judged.path / "prompts" / "judge_pairwise.yaml").unlink()
    result = judged.run("--genai-config", "cand.yaml")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "cand.yaml:" in out and "compare.judge.prompt.id: the judge prompt: prompt 'judge_pairwise' not found" in out
    assert not judged.run_dirs()
