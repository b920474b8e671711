"""`pytest-genai reproduce RUN` end to end, no mocks: real pytest sessions (a seeded-random custom pipeline with a
conftest score and metric, the OpenAI stub recorded to a cassette, the bundled SmolLM2 RAG example) logged to a
real sqlite MLflow store, then re-run from their run folders or MLflow run ids in fresh processes and diffed.
A deliberate prompt change, a missing artifact, an unknown run id and env drift under --strict each give their
exit code and name what differs."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import CASES, Project
from pytest_genai.cache_dir import cache_root
from pytest_genai.reproduce import cli as reproduce_cli
from pytest_genai.reproduce.diff import compared_metric, diff_case, index_changes
from pytest_genai.types import CaseResult
from pytest_genai.testing.example_project import write_env_lock

# Answers carry a draw of the global `random` (seeded per case by the harness) and depend on the rendered prompt,
# so the seed and the prompt are both observable in the answers.
PIPELINE = '''
import random
from pytest_genai import Answer, Usage

def factory(ctx):
    def pipeline(case):
        prompt = ctx.prompt.render({"question": case.question, "context": case.context or ""})[0]["content"]
        first = (case.context or "").split()[0] if prompt.startswith("Context:") else prompt.split()[0]
        text = f"{first} {random.randint(0, 10**6)}"
        return Answer(text=text, contexts=(case.context,), prompt=prompt,
                      usage=Usage(len(prompt.split()), len(text.split())))
    return pipeline
'''
CONFTEST = '''
from pytest_genai import register_metric

@register_metric("answer_chars", doc="characters in the answer", unit="chars", higher_is_better=None)
def answer_chars(case, answer, result):
    return float(len(answer.text)) if answer else None

def pytest_genai_case_scores(case, answer, result):
    return {"question_words": float(len(case.question.split()))}
'''


def reproduce(*argv: str) -> tuple[int, str, str]:
    """The command as `pytest-genai reproduce ARGV` runs it (the parser of pytest_genai/reproduce/cli.py)."""
    import contextlib
    import io

    parser = argparse.ArgumentParser(prog="pytest-genai")
    reproduce_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["reproduce", *argv])
    out: list[str] = []
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = reproduce_cli.run(args, echo=out.append)
    return code, "\n".join(out), err.getvalue()


def mlflow_runs(uri: str, experiment: str = "test-exp") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


@pytest.fixture
def seeded(project: Project) -> Project:
    project.pytester.makepyfile(genai_repro_pipeline=PIPELINE)
    project.pytester.makeconftest(CONFTEST)
    project.write_prompt(template="Context: {{ context }}\\nQ: {{ question }}")
    project.config.update({"pipeline": "genai_repro_pipeline:factory", "prompt": {"id": "qa", "version": 1},
                           "gates": {"error_rate": "== 0"}})
    project.write_config()
    return project


def logged_run(p: Project, *args: str) -> Path:
    result = p.run("--genai-config", "genai.yaml", *args, subprocess=True)
    assert result.ret == 0, result.stdout.str()
    return p.run_dirs()[-1]


def test_a_logged_run_reproduces_with_zero_diff_from_its_folder_and_from_its_mlflow_run_id(seeded: Project) -> None:
    run_dir = logged_run(seeded)
    answers = [r["answer"] for r in seeded.last_results()]
    assert len(set(answers)) == 4 and all(len(a.split()) == 2 for a in answers)  # a seeded draw in every answer
    run_id = json.loads((run_dir / "run.json").read_text())["tracking"]["run_id"]
    assert len(mlflow_runs(seeded.mlflow_uri)) == 1

    code, out, err = reproduce(str(run_dir), "--project", str(seeded.path))
    assert (code, err) == (0, ""), out
    assert "identical: 4 cases" in out and "wall-clock time is never identical" in out
    assert "provenance: the re-run's config_hash, prompt.hash, eval_set.hash" in out
    assert "config: the run's config.resolved.yaml" in out and "prompt: qa@1 from the run's prompt/qa.yaml" in out
    assert "eval set: the project's evals/qa.jsonl (its sha256 is the run's eval_set.hash)" in out
    assert "conftest.py" in out and "genai_repro_pipeline (on PYTHONPATH)" in out
    assert "env: installed vs the run's installed packages (env/installed.txt): identical" in out

    code, out, err = reproduce(run_id, "--project", str(seeded.path), "--tracking-uri", seeded.mlflow_uri)
    assert (code, err) == (0, ""), out
    assert f"reproduce MLflow run {run_id}" in out and "identical: 4 cases" in out
    # the project's genai.yaml names the store: a bare run id in the project folder finds it there
    code, out, _ = reproduce(run_id, "--project", str(seeded.path))
    assert code == 0 and "identical: 4 cases" in out
    assert len(mlflow_runs(seeded.mlflow_uri)) == 1  # reproducing logs nothing
    assert seeded.run_dirs() == [run_dir]  # nor writes into the project
    assert not list(seeded.path.rglob("__pycache__/genai_repro_pipeline*"))


def test_a_changed_prompt_file_gives_a_non_zero_diff_naming_the_cases_and_the_prompt_hash(seeded: Project) -> None:
    run_dir = logged_run(seeded)
    logged = (run_dir / "prompt" / "qa.yaml").read_text()
    edited = logged.replace("Context:", "Passage:")  # the text changes, the version stays 1
    assert edited != logged and "version: 1" in edited
    (run_dir / "prompt" / "qa.yaml").write_text(edited)
    code, out, _ = reproduce(str(run_dir), "--project", str(seeded.path))
    assert code == 1, out
    assert "warning: the prompt used (the run's prompt/qa.yaml) hashes to" in out
    assert "the project's prompts/qa.yaml has the run's prompt hash: --prompt-from project uses it" in out
    assert "provenance differs: prompt.hash" in out
    assert "DIFFERENT: 4 of 4 case(s)" in out
    for case in CASES:  # every case names its answer and its rendered prompt: old → new
        line = next(x for x in out.splitlines() if x.startswith(f"  {case['id']}: "))
        assert "answer '" in line and "→" in line and "prompt 'Context:" in line, line
    assert "differing metrics:" in out and "answer_chars" in out
    (run_dir / "prompt" / "qa.yaml").write_text(logged)
    assert reproduce(str(run_dir), "--project", str(seeded.path))[0] == 0  # the logged prompt reproduces again

    # today's prompt in the project: the run still reproduces from its own prompt, and --prompt-from project shows
    # what the change does to the run
    (seeded.path / "prompts" / "qa.yaml").write_text(edited)
    code, out, _ = reproduce(str(run_dir), "--project", str(seeded.path))
    assert code == 0 and "the project's prompts/qa.yaml is not the run's prompt any more" in out
    code, out, _ = reproduce(str(run_dir), "--project", str(seeded.path), "--prompt-from", "project")
    assert code == 1 and "provenance differs: prompt.hash" in out and "DIFFERENT: 4 of 4 case(s)" in out


def test_a_partial_run_is_reproduced_on_its_own_cases(seeded: Project) -> None:
    run_dir = logged_run(seeded, "-k", "rome or moon")
    code, out, _ = reproduce(str(run_dir), "--project", str(seeded.path))
    assert code == 0, out
    assert "cases: the run's 2 (it was partial), selected by id" in out and "identical: 2 cases" in out


def test_a_changed_pipeline_module_shows_the_cases_it_changes(seeded: Project) -> None:
    run_dir = logged_run(seeded)
    module = seeded.path / "genai_repro_pipeline.py"
    module.write_text(module.read_text().replace('text = f"{first} {random.randint(0, 10**6)}"',
                                                 'text = f"{first} {random.randint(0, 10**6)}" + ("!" if case.id == "h2o" else "")'))
    code, out, _ = reproduce(str(run_dir), "--project", str(seeded.path))
    assert code == 1 and "DIFFERENT: 1 of 4 case(s)" in out, out
    h2o = next(x for x in out.splitlines() if x.startswith("  h2o: "))
    assert "answer 'H2O " in h2o and "!'" in h2o, h2o
    assert "scores.question_words" not in h2o  # what did not change is not listed


# ---------------------------------------------------------------------------------------------- API + cassette

KEY = "sk-repro-1a2b3c4d5e6f7a8b"
API_CASES = [{"id": f"q{i}", "question": f"Which value has note {i}? Mail desk{i}.lee@example.com",
              "answers": [f"item{i} value"], "context": f"item{i} value is here"} for i in range(5)]


@pytest.fixture
def api_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Project, object]]:
    from pytest_genai.testing.openai_stub import OpenAIStub, StubBehaviour

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GENAI_REDACT_KEY", "rk-repro-0a1b2c3d4e5f6a7b8c9d")
    with OpenAIStub(StubBehaviour(latency_ms=1, api_key=KEY)) as stub:
        project.use_stub(stub.base_url, API_CASES, temperature=0.0, max_retries=0)
        project.config["gates"] = {"error_rate": "== 0"}
        project.config["safety"] = {"redact_key": "${GENAI_REDACT_KEY}"}
        project.write_config()
        yield project, stub


def test_an_api_run_reproduces_from_its_cassette_with_the_server_gone_and_no_key(
        api_project: tuple[Project, object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    project, stub = api_project
    run_dir = logged_run(project, "--genai-cache", "record", "--genai-cassette", "cassette.jsonl")
    assert (run_dir / "cassette.jsonl").is_file()
    assert "127.0.0.1" in (run_dir / "config.resolved.yaml").read_text()  # loopback stays readable
    assert "<EMAIL:" in (run_dir / "eval_set" / "qa.jsonl").read_text()
    stub.stop()  # type: ignore[attr-defined]
    monkeypatch.delenv("OPENAI_API_KEY")
    code, out, _ = reproduce(str(run_dir), "--project", str(project.path))
    assert code == 0, out
    assert "answers: replayed from the run's cassette cassette.jsonl" in out
    assert "config: the run's config.resolved.yaml" in out  # nothing in it was redacted: loopback stays readable
    assert "${OPENAI_API_KEY} (llm) is not set: a placeholder stands in" in out
    assert "identical: 5 cases" in out
    assert KEY not in out and "desk0.lee@example.com" not in out and "127.0.0.1" not in out

    # without the project, only the redacted artifacts are left: the replay misses, and the report says why
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, out, _ = reproduce(str(run_dir), "--project", str(elsewhere))
    assert code == 1, out
    assert "eval set: the run's eval_set/qa.jsonl snapshot" in out and "no recorded response for case" in out
    assert "DIFFERENT: 5 of 5 case(s)" in out and "CacheMiss" in out
    assert "desk0.lee@example.com" not in out and "127.0.0.1" not in out


# ---------------------------------------------------------------------------------------------- bad inputs

def test_bad_inputs_exit_2_naming_what_is_wrong(seeded: Project, tmp_path: Path) -> None:
    code, _, err = reproduce("0123456789abcdef0123456789abcdef", "--tracking-uri", seeded.mlflow_uri)
    assert code == 2 and "'0123456789abcdef0123456789abcdef' is not a run folder, and the MLflow store" in err
    code, _, err = reproduce(str(tmp_path / "runs" / "nope"))
    assert code == 2 and "no such run folder" in err
    run_dir = logged_run(seeded)
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "config.resolved.yaml").unlink()
    code, out, err = reproduce(str(broken), "--project", str(seeded.path))
    assert code == 2 and "has no config.resolved.yaml" in err and out == ""
    code, _, err = reproduce(str(run_dir), "--project", str(tmp_path / "missing"))
    assert code == 2 and "--project" in err and "no such folder" in err
    code, _, err = reproduce(str(run_dir), "--cassette", str(tmp_path / "none.jsonl"))
    assert code == 2 and "--cassette" in err and "no such file" in err


def _drifting_lock(path: Path) -> None:
    """Every installed distribution pinned, but pyyaml at another version and one that is not installed."""
    from pytest_genai.tracking.envlock import installed_distributions

    pins = {n: v for n, v in installed_distributions().items() if n not in ("pytest-genai", "pyyaml")}
    path.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))
                    + "not-a-real-package-xyz==1.0\npyyaml==0.0.1\n")


def test_strict_refuses_env_drift_before_re_running(seeded: Project) -> None:
    _drifting_lock(seeded.path / "requirements.lock")
    seeded.write_config(env__lock_file="requirements.lock")
    run_dir = logged_run(seeded)
    assert (run_dir / "env" / "requirements.lock").is_file()
    code, out, err = reproduce(str(run_dir), "--project", str(seeded.path), "--strict")
    assert code == 2, out
    assert "env: installed vs the run's lock requirements.lock: 2 difference(s) (the run had 2)" in out
    assert "pyyaml: locked 0.0.1, installed" in out
    assert "--strict: not re-running: the environment and the code (git) are not the run's" in err
    assert "re-ran" not in out
    code, out, _ = reproduce(str(run_dir), "--project", str(seeded.path))  # reported, not refused, without --strict
    assert code == 0 and "identical: 4 cases" in out and "2 difference(s)" in out


def _git(path: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", *args], cwd=path, check=True,
                   capture_output=True)


def test_strict_reproduces_on_the_runs_clean_commit_and_refuses_another(seeded: Project) -> None:
    from pytest_genai.tracking.envlock import installed_distributions

    lock = seeded.path / "requirements.lock"
    lock.write_text("".join(f"{n}=={v}\n" for n, v in sorted(installed_distributions().items()) if n != "pytest-genai"))
    seeded.write_config(env__lock_file="requirements.lock")
    (seeded.path / ".gitignore").write_text("runs/\n__pycache__/\n.pytest-genai/\n"
                                            "runpytest-*\nstdout\nstderr\n")  # what pytester writes beside
    _git(seeded.path, "init", "-q")
    _git(seeded.path, "add", "-A")
    _git(seeded.path, "commit", "-qm", "eval")
    run_dir = logged_run(seeded)
    provenance = json.loads((run_dir / "run.json").read_text())["provenance"]
    assert provenance["git_dirty"] is False, provenance["git_dirty_paths"]
    code, out, _ = reproduce(str(run_dir), "--project", str(seeded.path), "--strict")
    assert code == 0, out
    assert "env: installed vs the run's lock requirements.lock: identical" in out
    assert "clean): same commit" in out and "identical: 4 cases" in out
    (seeded.path / "notes.txt").write_text("later\n")
    _git(seeded.path, "add", "notes.txt")
    _git(seeded.path, "commit", "-qm", "later")
    code, out, err = reproduce(str(run_dir), "--project", str(seeded.path), "--strict")
    assert code == 2 and "ANOTHER commit" in out and "the code (git) is not the run's" in err


# ---------------------------------------------------------------------------------------------- the diff itself

def _result(**kw: object) -> CaseResult:
    base = dict(id="a", question="q?", answer="x", answers=("x",), em=1.0, f1=1.0, latency_ms=1.0, input_tokens=3,
                output_tokens=1, cost_usd=0.0, seed=1)
    return CaseResult(**{**base, **kw})  # type: ignore[arg-type]


def test_the_case_diff_ignores_time_and_how_an_answer_was_obtained_but_nothing_else() -> None:
    a = _result(retrieved=({"doc_id": "d1", "chunk_id": "d1#0", "score": 0.5, "used": True},), scores={"s": 1.0})
    same = _result(latency_ms=999.0, cached=True, system_fingerprint="fp2", metadata={"t": 3},
                   retrieved=({"doc_id": "d1", "chunk_id": "d1#0", "score": 0.50001, "used": True},), scores={"s": 1.0})
    assert diff_case(a, same) == ()
    other = _result(answer="y", em=0.0, f1=0.0, retrieved=({"doc_id": "d2", "chunk_id": "d2#0", "used": True},),
                    scores={"s": 1.0, "t": 2.0}, safety_flags=("EMAIL",), error="Traceback ...\nValueError: no")
    names = [c.name for c in diff_case(a, other)]
    assert names[:4] == ["answer", "error", "passed", "em"]
    assert {"f1", "retrieved", "safety_flags", "scores.t"} <= set(names) and "latency_ms" not in names
    units = {"latency_p95_ms": "ms", "wall_s": "s", "f1": ""}
    assert [m for m in ("f1", "f1_ci_low", "latency_p95_ms", "latency_p95_ms_ci_high", "wall_s", "f1_delta",
                        "em_mcnemar_p", "env_drift", "pref_win_rate", "answer_chars") if compared_metric(m, units)] == \
        ["f1", "f1_ci_low", "answer_chars"]


def test_index_changes_name_the_documents_and_settings_that_differ() -> None:
    old = {"fingerprint": "a", "inputs": {"corpus": [["x.md", "1"], ["y.md", "2"]], "chunk_size": 128, "faiss": "1.9"}}
    new = {"fingerprint": "b", "inputs": {"corpus": [["x.md", "1"], ["y.md", "3"], ["z.md", "4"]], "chunk_size": 64,
                                          "faiss": "1.9"}}
    assert index_changes(old, new) == ["corpus: 1 document(s) edited: y.md", "corpus: 1 document(s) new in the "
                                       "project's corpus: z.md", "chunk_size 128 → 64"]
    assert index_changes(old, {**old}) == [] and index_changes(None, new) == []


# ---------------------------------------------------------------------------------------------- the bundled example

REPO = Path(__file__).resolve().parents[1]
SUBSET = 3
REAL_CACHE = cache_root()  # read at import, before pytester points HOME at its temp folder


@pytest.mark.slow  # the bundled SmolLM2 RAG example, run and re-run
def test_the_bundled_smollm2_rag_example_reproduces_with_zero_diff(pytester: pytest.Pytester, mlflow_uri: str,
                                                                   tmp_path_factory: pytest.TempPathFactory,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled example (SmolLM2 greedy, MiniLM retrieval over the handbook) on its first questions: logged once,
    reproduced from its MLflow run id with every case and metric identical, the corpus taken from the project."""
    cfg = yaml.safe_load((REPO / "genai.yaml").read_text())
    for name in ("prompts", "corpus"):
        shutil.copytree(REPO / name, pytester.path / name)
    write_env_lock(pytester.path / "requirements.lock")
    (pytester.path / "eval_sets").mkdir()
    lines = (REPO / cfg["eval"]["set"]).read_text().splitlines()[:SUBSET]
    (pytester.path / cfg["eval"]["set"]).write_text("\n".join(lines) + "\n")
    cfg["tracking"] = {"uri": mlflow_uri, "experiment": "rag", "results_dir": "runs"}
    cfg["gates"] = {"error_rate": "== 0"}
    (pytester.path / "genai.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cache = tmp_path_factory.mktemp("genai-cache")  # converted weights and built indexes reused, nothing written there
    for sub in ("models", "indexes"):
        if (REAL_CACHE / sub).is_dir():
            (cache / sub).symlink_to(REAL_CACHE / sub)
    monkeypatch.setenv("PYTEST_GENAI_CACHE_DIR", str(cache))
    first = pytester.runpytest_subprocess("--genai-config", "genai.yaml")
    assert first.ret == 0, first.stdout.str()
    run_dir = sorted((pytester.path / "runs").iterdir())[-1]
    run_id = json.loads((run_dir / "run.json").read_text())["tracking"]["run_id"]
    code, out, err = reproduce(run_id, "--project", str(pytester.path), "--tracking-uri", mlflow_uri)
    assert (code, err) == (0, ""), out
    assert "rag.corpus corpus/handbook" in out and f"identical: {SUBSET} cases" in out
    assert "index.fingerprint and model hashes are the run's" in out
    assert "env: installed vs the run's lock requirements.lock:" in out
