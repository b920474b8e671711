"""Core v2 guarantees, each in the mode where it is hardest: seeded custom pipelines under subsets,
workers and pools; PII planted where a sanitizer per writer would miss it; metrics added by a conftest;
fail-fast checks at session start; the run record read back by `pytest-genai show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Project
from pytest_genai.cli import main as cli

# random and torch, torch imported on the first call: the per-case draws must not depend on what ran before.
SEEDED_PIPELINE = '''
import random

def factory(ctx):
    def pipeline(case):
        import torch
        return f"{(case.context or '').split()[0]} {random.random():.15f} {float(torch.rand(1)):.15f}"
    return pipeline

def pooled(ctx):
    """Declares itself safe for a pool: its randomness comes from the seed the harness passes."""
    def pipeline(case, seed):
        rng = random.Random(seed)
        return f"{(case.context or '').split()[0]} {rng.random():.15f}"
    pipeline.concurrent = True
    return pipeline

def unseeded(ctx):
    def pipeline(case):
        return f"{(case.context or '').split()[0]} {random.random():.15f}"
    return pipeline
'''


def answers(project: Project) -> dict[str, str]:
    return {r["id"]: r["answer"] for r in project.last_results()}


@pytest.fixture
def seeded(project: Project) -> Project:
    project.pytester.makepyfile(genai_seeded=SEEDED_PIPELINE)
    project.write_config(pipeline="genai_seeded:factory")
    return project


@pytest.mark.slow  # four fresh sessions importing torch, one under xdist
def test_random_and_lazily_imported_torch_draw_the_same_per_case(seeded: Project) -> None:
    assert seeded.run("--genai-config", "genai.yaml", subprocess=True).ret == 1  # f1 gate: answers carry draws
    full = answers(seeded)
    assert len(set(full.values())) == 4 and all(len(a.split()) == 3 for a in full.values())
    seeded.run("--genai-config", "genai.yaml", "-k", "rome", subprocess=True)  # torch first imported in this case
    assert answers(seeded) == {"rome": full["rome"]}
    seeded.run("--genai-config", "genai.yaml", "-n", "2", subprocess=True)
    assert answers(seeded) == full
    seeded.run("--genai-config", "genai.yaml", "--genai-concurrency", "4", subprocess=True)
    assert answers(seeded) == full
    run = seeded.summary()
    assert run["execution"]["plan"] == "sequential" and "does not declare" in run["execution"]["reason"]


def test_a_declared_concurrent_pipeline_runs_on_a_pool_with_the_same_answers(seeded: Project) -> None:
    seeded.write_config(pipeline="genai_seeded:pooled")
    seeded.run("--genai-config", "genai.yaml")
    one = answers(seeded)
    seeded.run("--genai-config", "genai.yaml", "--genai-concurrency", "4", "--genai-repeat", "2")
    assert answers(seeded) == one
    run = seeded.summary()
    assert run["execution"] == {**run["execution"], "plan": "pool", "size": 4}
    assert run["metrics"]["determinism_rate"] == 1.0


def test_repeat_under_a_pool_request_keeps_determinism_for_a_global_rng_pipeline(seeded: Project) -> None:
    seeded.write_config(pipeline="genai_seeded:unseeded")
    seeded.run("--genai-config", "genai.yaml", "--genai-concurrency", "4", "--genai-repeat", "2")
    assert seeded.summary()["metrics"]["determinism_rate"] == 1.0


CONFTEST_METRIC = '''
from pytest_genai import register_metric

@register_metric("answer_words", doc="words in the answer", unit="words", higher_is_better=None)
def answer_words(case, answer, result):
    return float(len(answer.text.split())) if answer else None

def pytest_genai_case_scores(case, answer, result):
    return {"question_chars": float(len(case.question))}

def pytest_genai_terminal_lines(record):
    return [f"custom line: {len(record.results)} results"]
'''


def test_a_metric_added_in_a_conftest_is_gateable_logged_and_shown(project: Project) -> None:
    from mlflow.tracking import MlflowClient

    project.pytester.makeconftest(CONFTEST_METRIC)
    project.write_config(gates={"answer_words": "<= 1", "f1": ">= 0.5"})  # moon answers 2 words: the gate fails
    result = project.run("--genai-config", "genai.yaml", subprocess=True)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["answer_words *1.25 *words *<= 1 *FAIL*", "custom line: 4 results",
                                 "*GATES FAILED: answer_words=1.25 (gate <= 1)*"])
    by_id = {r["id"]: r for r in project.last_results()}
    assert by_id["moon"]["scores"] == {"answer_words": 2.0, "question_chars": 29.0}
    client = MlflowClient(tracking_uri=project.mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("test-exp").experiment_id])[0]
    assert run.data.metrics["answer_words"] == 1.25
    project.write_config(gates={"answer_wrds": "<= 1"})
    typo = project.run("--genai-config", "genai.yaml", subprocess=True)
    assert typo.ret == 4
    typo.stderr.fnmatch_lines(["*gates.answer_wrds: unknown metric 'answer_wrds' — did you mean 'gates.answer_words'?*"])


BUILTIN_ORDER_CONFTEST = '''
import pytest

def pytest_genai_case_scores(case, answer, result):
    return {"exact_match_len": 7.0}

@pytest.hookimpl(tryfirst=True)
def pytest_genai_terminal_lines(record):
    return ["before the table"]
'''


def test_the_built_ins_are_implementations_of_the_same_hooks(project: Project) -> None:
    """The built-in per-case scores and the metric table come through `pytest_genai_case_scores` and
    `pytest_genai_terminal_lines`: a conftest's score of the same name wins (it runs after the built-in), and a
    `tryfirst` line of the user's precedes the built-in table."""
    project.pytester.makeconftest(CONFTEST_METRIC.replace("answer_words", "exact_match_len")
                                  + BUILTIN_ORDER_CONFTEST)
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", subprocess=True)
    out = result.stdout.str()
    assert out.index("before the table") < out.index("exact_match_len")
    assert project.summary()["metrics"]["exact_match_len"] == 7.0  # the user's score replaced the built-in one
    assert {r["scores"]["exact_match_len"] for r in project.last_results()} == {7.0}


MISBEHAVING_HOOKS = '''
def pytest_genai_case_scores(case, answer, result):
    if case.id == "rome":
        raise KeyError("no score for jane.doe@example.com")
    return {}

def pytest_genai_terminal_lines(record):
    return "one string is one line"

def pytest_genai_run_finished(record, run_dir):
    raise RuntimeError("the hook broke for jane.doe@example.com")
'''


def test_hooks_that_misbehave_are_reported_not_crashed_on(project: Project) -> None:
    """A scorer hook that raises makes that case an error scored as wrong (EM/F1 0, labelled as scoring); a
    terminal hook returning one str prints one line; a run_finished hook that raises is a sanitized HOOK ERROR that
    fails the session after the run was recorded and logged — never a traceback with raw PII."""
    project.pytester.makeconftest(MISBEHAVING_HOOKS)
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", subprocess=True)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1 and "jane.doe@example.com" not in out
    assert "one string is one line" in result.stdout.lines
    result.stdout.fnmatch_lines(["*scoring raised:*", "*HOOK ERROR: a pytest_genai_run_finished hook raised*RuntimeError*"])
    rome = {r["id"]: r for r in project.last_results()}["rome"]
    assert rome["error"].startswith("a per-case scorer failed") and (rome["em"], rome["f1"]) == (0.0, 0.0)
    assert project.summary()["metrics"]["em"] == 0.75
    assert "gates passed: 1 of 1; but 1 case(s) errored" in result.stdout.lines


def test_a_hook_score_named_like_a_built_in_result_metric_is_refused(project: Project) -> None:
    """`em` is computed from the case result, not from scores: a hook score of that name would be silently ignored
    by the metric (and logged as a second, conflicting assessment), so it is the case's error, naming the fix."""
    project.pytester.makeconftest("def pytest_genai_case_scores(case, answer, result):\n    return {'em': 0.25}\n")
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", subprocess=True)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*pytest_genai_case_scores returned 'em': the name of a built-in metric*"])


def test_a_built_in_metric_is_replaced_only_when_asked(project: Project) -> None:
    replacing = ("from pytest_genai import register_metric\n\n"
                 "@register_metric('f1', doc='my f1', higher_is_better=True{})\n"
                 "def f1(case, answer, result):\n    return 0.5\n")
    project.pytester.makeconftest(replacing.format(", replace=True"))
    project.write_config(gates={"f1": ">= 0.4"})
    assert project.run("--genai-config", "genai.yaml", subprocess=True).ret == 0
    assert project.summary()["metrics"]["f1"] == 0.5  # the user's per-case f1, aggregated by mean
    project.pytester.makeconftest(replacing.format(""))
    clash = project.run("--genai-config", "genai.yaml", subprocess=True)
    assert clash.ret != 0 and "INTERNALERROR" not in clash.stdout.str() + clash.stderr.str()
    assert "metric 'f1' is already registered (pass replace=True to override it)" in clash.stdout.str() + clash.stderr.str()


PII_PIPELINE = '''
from pytest_genai import Answer

def factory(ctx):
    def pipeline(case, seed):
        messages = [{"role": "user", "content": f"Context: {case.context}\\nQuestion: {case.question}"}]
        gen = ctx.llm.generate(messages, seed=seed)  # through the response cache: recorded, exported as a cassette
        return Answer(text=gen.text, metadata={
            "retrieved": [{"doc_id": "carol.jones@example.org", "score": 1.0}],
            "note": {"owner": "call +44-20-7946-0958"}, "carol.jones@example.org": 1})
    return pipeline

def broken(ctx):
    raise RuntimeError("cannot reach the index owned by dave.doe@example.net")
'''
STUB_KEY = "sk-core-v2-5e4d3c2b1a09"
PLANTED = ["carol.jones@example.org", "+44-20-7946-0958", "dave.doe@example.net", "erin@example.com",
           "frank.li@example.com", "lock-user:hunter22pass", "hunter22pass", STUB_KEY]


def _everything_written(project: Project) -> list[Path]:
    inputs = {project.path / "evals" / "qa.jsonl", project.path / "genai.yaml", project.path / "requirements.lock"}
    files = [p for p in project.path.rglob("*") if p.is_file() and p not in inputs and p.suffix not in (".py", ".pyc")]
    return files + [Path(project.mlflow_uri[len("sqlite:///"):])]


def test_planted_pii_reaches_no_file_store_cache_terminal_or_junit_under_xdist(project: Project,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import CASES
    from pytest_genai.testing.openai_stub import OpenAIStub, StubBehaviour
    from pytest_genai.tracking.envlock import installed_distributions

    project.pytester.makepyfile(genai_pii=PII_PIPELINE)
    pins = "".join(f"{n}=={v}\n" for n, v in sorted(installed_distributions().items()) if n != "pytest-genai")
    (project.path / "requirements.lock").write_text("--extra-index-url https://lock-user:hunter22pass@pkgs.example/simple\n" + pins)
    cases = [dict(c, question=c["question"] + " (ask erin@example.com)") for c in CASES]
    cases.append({"id": "leak", "question": "Who wrote it?", "answers": ["frank.li@example.com wrote"],
                  "context": "frank.li@example.com wrote it."})
    monkeypatch.setenv("OPENAI_API_KEY", STUB_KEY)
    with OpenAIStub(StubBehaviour(api_key=STUB_KEY)) as stub:
        project.use_stub(stub.base_url, cases)
        project.write_config(pipeline="genai_pii:factory", env={"lock_file": "requirements.lock"}, gates={"error_rate": "== 0"})
        result = project.run("--genai-config", "genai.yaml", "-n", "2", "--junitxml=junit.xml", "--genai-cache", "record",
                             "--genai-cassette", "cassette.jsonl", subprocess=True)
        assert result.ret == 0, result.stdout.str()[-3000:]
        out = result.stdout.str() + result.stderr.str()
        record = project.summary()
        assert record["provenance"]["env_lock_hash"] and record["metrics"]["env_drift"] == 0
        by_id = {r["id"]: r for r in project.last_results()}
        assert by_id["paris"]["retrieved"][0]["doc_id"].startswith("<EMAIL:")
        assert by_id["paris"]["metadata"]["note"]["owner"].startswith("call <PHONE:")
        assert by_id["leak"]["answer"].startswith("<EMAIL:") and by_id["leak"]["em"] == 1.0  # gold redacted alike
        assert (project.path / "cassette.jsonl").read_text().count("\n") == len(cases)

        project.write_config(pipeline="genai_pii:broken")
        broken = project.run("--genai-config", "genai.yaml", "-n", "2", "--junitxml=junit-broken.xml", subprocess=True)
    assert broken.ret != 0
    out += broken.stdout.str() + broken.stderr.str()
    assert "RuntimeError: cannot reach the index owned by <EMAIL:" in out
    files = _everything_written(project)
    assert {"cassette.jsonl", "cache.sqlite3", "junit.xml", "junit-broken.xml", "results.jsonl", "run.json"} <= {f.name for f in files}
    for raw in PLANTED:
        assert raw not in out, raw
        for f in files:
            assert raw.encode() not in f.read_bytes(), (raw, f)


def test_replay_with_a_config_factory_is_refused(project: Project) -> None:
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", "--genai-cache", "replay")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*pipeline*--genai-cache replay cannot replay*factory(ctx)*ctx.llm*"])


def test_non_finite_latency_is_that_cases_error(project: Project) -> None:
    project.pytester.makepyfile(genai_nan='''
from pytest_genai import Answer
def factory(config):
    return lambda case: Answer(text=case.context.split()[0], latency_ms=float("nan") if case.id == "rome" else 5.0)
''')
    project.write_config(pipeline="genai_nan:factory")
    project.run("--genai-config", "genai.yaml")
    by_id = {r["id"]: r for r in project.last_results()}
    assert "latency_ms must be a finite" in by_id["rome"]["error"]
    assert project.summary()["metrics"]["latency_p95_ms"] == 5.0


def test_gate_on_pref_win_rate_without_a_baseline_is_skipped(project: Project) -> None:
    project.write_config(gates={"pref_win_rate": ">= 0.6"})
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*pref_win_rate*>= 0.6*skipped (no baseline*"])


def test_concurrency_zero_is_refused(project: Project) -> None:
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", "--genai-concurrency", "0")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--genai-concurrency must be at least 1 (got 0)*"])


def test_unreachable_tracking_server_and_unwritable_results_dir_fail_at_start(project: Project) -> None:
    project.pytester.makepyfile(genai_count='''
import pathlib
def factory(config):
    def pipeline(case):
        pathlib.Path("called").write_text("yes")
        return case.context
    return pipeline
''')
    project.write_config(pipeline="genai_count:factory", tracking__uri="http://127.0.0.1:9")
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*MLflow tracking store http://127.0.0.1:9 cannot be used*tracking.enabled: false*"])
    (project.path / "blocker").write_text("a file, not a folder")
    project.write_config(pipeline="genai_count:factory", tracking__results_dir="blocker/runs")
    result = project.run("--genai-config", "genai.yaml")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*genai.yaml:*tracking.results_dir: cannot write run folders under*"])
    assert not (project.path / "called").exists()


def test_corrupt_cassette_is_a_usage_error_naming_file_and_line(project: Project) -> None:
    project.write_config()
    (project.path / "cassette.jsonl").write_text('{"ok": 1\n')
    result = project.run("--genai-config", "genai.yaml", "--genai-cache", "replay", "--genai-cassette", "cassette.jsonl")
    assert result.ret == 4
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(["*cassette.jsonl:1:*"])


def test_show_prints_the_session_table_from_a_folder_and_an_mlflow_run(project: Project, capsys: pytest.CaptureFixture[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    project.write_config()
    result = project.run("--genai-config", "genai.yaml")
    table = [ln for ln in result.stdout.lines if ln.startswith(("metric ", "f1 ", "em ", "cases_total"))]
    assert len(table) == 4
    run_dir = project.run_dirs()[-1]
    assert cli(["show", str(run_dir)]) == 0
    shown = capsys.readouterr().out.splitlines()
    for line in table:
        assert line in shown
    run_id = project.summary()["tracking"]["run_id"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.mlflow_uri)
    assert cli(["show", run_id]) == 0
    from_mlflow = capsys.readouterr().out.splitlines()
    assert all(line in from_mlflow for line in table), from_mlflow
    # without the env: the genai.yaml of the current folder names the store (as the session read it)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(project.path)
    assert cli(["show", run_id]) == 0 and cli(["report", run_id, "--out", "r.html"]) == 0
    assert (project.path / "r.html").is_file()
    # nowhere to look: refused, and no empty store is created to look in
    empty = project.path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    capsys.readouterr()
    assert cli(["show", run_id]) == 2 and cli(["report", run_id]) == 2
    assert "there is no MLflow store at" in capsys.readouterr().err and not (empty / "mlflow.db").exists()


def test_legacy_run_folder_stays_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    legacy = tmp_path / "20261101-080000-abcdef12"
    legacy.mkdir()
    (legacy / "summary.json").write_text(json.dumps({
        "metrics": {"f1": 0.5, "em": None, "cases_total": 2, "cases_evaluated": 2}, "params": {"pipeline": "builtin:llm"},
        "tags": {"config_hash": "c" * 64, "genai.partial": "false", "git_commit": "abc"}, "experiment": "e",
        "mlflow_run_id": None}))
    (legacy / "gates.json").write_text(json.dumps({"passed": True, "enforced": True, "partial": False,
                                                  "gates": [{"metric": "f1", "gate": ">= 0.4", "value": 0.5, "passed": True, "reason": ""}]}))
    (legacy / "results.jsonl").write_text(json.dumps({"id": "a", "question": "q", "answer": "x", "answers": ["x"], "em": 1.0,
                                                      "f1": 1.0, "latency_ms": 1.0, "input_tokens": 1, "output_tokens": 1,
                                                      "cost_usd": 0.0, "seed": 1}) + "\n")
    assert cli(["show", str(legacy)]) == 0
    out = capsys.readouterr().out
    assert "f1" in out and ">= 0.4" in out and "pass" in out


def test_run_record_matches_the_shipped_schema(project: Project) -> None:
    project.write_config()
    import jsonschema

    from pytest_genai.runlog import SCHEMA_FILE, schema

    assert json.loads(SCHEMA_FILE.read_text()) == schema(), "regenerate: python -m pytest_genai.runlog"
    project.run("--genai-config", "genai.yaml")
    record = project.summary()
    record["results"] = project.last_results()
    jsonschema.validate(record, schema())
    assert record["schema_version"] == 2 and record["status"] == "complete"


def test_the_docs_metric_reference_is_the_registry(request: pytest.FixtureRequest) -> None:
    from pytest_genai.metrics.registry import markdown_table

    page = (Path(__file__).parents[1] / "docs" / "reference" / "metrics.md").read_text()
    assert markdown_table() in page, ("docs/reference/metrics.md is stale (the metric registry changed): "
                                      "run `.venv/bin/python scripts/gen_docs.py`")


def test_undefined_template_variable_stops_the_run_once(project: Project) -> None:
    project.write_prompt(template="Context: {{ contxt }} Q: {{ question }}")
    project.config.update({"pipeline": "builtin:llm", "prompt": {"id": "qa", "version": 1},
                           "llm": {"provider": "openai_compatible", "base_url": "http://127.0.0.1:9", "model_id": "m"}})
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", subprocess=True)
    assert result.ret == 4
    out = result.stdout.str() + result.stderr.str()
    assert "contxt" in out and "context" in out
    assert "passed" not in out and "failed" not in out.replace("failed to render", "")


def test_a_custom_pipeline_opts_into_the_prompt_probe(project: Project) -> None:
    """A custom pipeline with `probe_variables(case)` gets the built-ins' start-up check: one error, no case run."""
    project.write_prompt(template="Context: {{ contxt }} Q: {{ question }}")
    project.pytester.makepyfile(probed_pipe="""
class Pipe:
    def __init__(self, ctx):
        self.prompt = ctx.prompt

    def probe_variables(self, case):
        return {"context": case.context, "question": case.question}

    def __call__(self, case):
        return self.prompt.render(self.probe_variables(case))

def factory(ctx):
    return Pipe(ctx)
""")
    project.config.update({"pipeline": "probed_pipe:factory", "prompt": {"id": "qa", "version": 1}})
    project.write_config()
    result = project.run("--genai-config", "genai.yaml", subprocess=True)
    assert result.ret == 4
    out = result.stdout.str() + result.stderr.str()
    assert out.count("contxt") >= 1 and "passed" not in out and " failed" not in out


def test_upload_logs_to_the_store_the_run_was_meant_for(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    project.write_config(tracking__uri=project.mlflow_uri.replace("mlflow.db", "missing-dir/mlflow.db"))
    assert project.run("--genai-config", "genai.yaml").ret == 4  # fail fast: the store's folder does not exist
    project.write_config()
    (project.path / "outage").mkdir()
    record_uri = project.mlflow_uri
    monkeypatch.chdir(project.path / "outage")  # upload's cwd has no mlflow.db: it must use the recorded URI
    project.write_config(tracking__enabled=False)
    project.run("--genai-config", str(project.path / "genai.yaml"))
    run_dir = project.run_dirs()[-1]
    data = json.loads((run_dir / "run.json").read_text())
    data["tracking"]["uri"] = record_uri
    (run_dir / "run.json").write_text(json.dumps(data))
    assert cli(["upload", str(run_dir)]) == 0
    client = MlflowClient(tracking_uri=record_uri)
    assert client.search_runs([client.get_experiment_by_name("test-exp").experiment_id])
    assert not (project.path / "outage" / "mlflow.db").exists()


def test_untracked_eval_set_makes_the_tree_dirty(project: Project) -> None:
    project.write_config()
    import subprocess

    subprocess.run(["git", "init", "-q"], cwd=project.path, check=True)
    project.run("--genai-config", "genai.yaml")
    prov = project.summary()["provenance"]
    assert prov["git_dirty"] is True
    assert any("evals" in p for p in prov["git_dirty_paths"]), prov["git_dirty_paths"]



CTX_PIPELINE = '''
def factory(ctx):
    def pipeline(case, seed):
        messages = ctx.prompt.render({"question": case.question, "context": case.context or ""})
        return ctx.llm.generate(messages, seed=seed).text   # plain text: the harness counts what ctx.llm saw
    pipeline.concurrent = True
    return pipeline

def nollm(ctx):
    return lambda case: (case.context or "").split()[0]
'''


def test_a_context_pipeline_records_and_replays_like_a_builtin(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import CASES
    from pytest_genai.testing.openai_stub import OpenAIStub, StubBehaviour

    project.pytester.makepyfile(genai_ctx=CTX_PIPELINE)
    monkeypatch.setenv("OPENAI_API_KEY", STUB_KEY)
    with OpenAIStub(StubBehaviour(api_key=STUB_KEY)) as stub:
        project.use_stub(stub.base_url, CASES)
        project.write_config(pipeline="genai_ctx:factory", gates={"error_rate": "== 0"})
        project.run("--genai-config", "genai.yaml", "--genai-cache", "record", "--genai-concurrency", "4").assert_outcomes(passed=4)
        recorded = project.summary()
    replay = project.run("--genai-config", "genai.yaml", "--genai-cache", "replay", "--genai-concurrency", "4")
    replay.assert_outcomes(passed=4)
    replayed = project.summary()
    assert recorded["metrics"]["tokens_input_total"] > 0 and recorded["tags"]["genai.cache_misses"] == "4"
    assert replayed["tags"]["genai.cache_hits"] == "4" and replayed["tags"]["genai.latency_source"] == "recorded"
    for metric in ("tokens_input_total", "cost_total_usd", "f1"):
        assert replayed["metrics"][metric] == recorded["metrics"][metric], metric
    # latency: each replayed call costs its recorded latency (the pipeline's own work around it is re-measured)
    assert replayed["metrics"]["latency_p50_ms"] >= min(r["latency_ms"] for r in project.last_results()) > 0
    assert all(r["prompt"] and r["prompt"].startswith("Context:") for r in project.last_results())
    project.write_config(pipeline="genai_ctx:nollm")
    silent = project.run("--genai-config", "genai.yaml", "--genai-cache", "replay")
    assert silent.ret == 1
    silent.stdout.fnmatch_lines(["*RUN ERROR: --genai-cache replay: the pipeline 'genai_ctx:nollm' never answered from the cache*"])
