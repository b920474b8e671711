"""Saved views: parsing and translation to MLflow's grammar, did-you-mean, config-load errors with file:line:key,
runs found in a real MLflow sqlite store, views stored on the experiment, and `pytest-genai runs --view`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_genai import names
from pytest_genai.config import ConfigError, load_config
from pytest_genai.config.views import TAG_VIEW_PREFIX, ViewError, parse_view, to_mlflow_filter
from pytest_genai.runs_cmd import add_parser, run, ui_link
from pytest_genai.tracking.views import find_runs, search, store_config_views, store_views, stored_views

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")  # MLflow's own

RELEASE = "em >= 0.6 and latency_p95_ms <= 1200 and cost_per_question_usd <= 0.002"
SHA_A = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


# ---------------------------------------------------------------- parsing and translation


@pytest.mark.parametrize(("expression", "expected"), [
    (RELEASE, "metrics.em >= 0.6 and metrics.latency_p95_ms <= 1200 and metrics.cost_per_question_usd <= 0.002"),
    ("f1_ci_low > 0.5 AND f1_delta >= -0.02 and em_mcnemar_p < 5e-2",
     "metrics.f1_ci_low > 0.5 and metrics.f1_delta >= -0.02 and metrics.em_mcnemar_p < 0.05"),
    ("pref_win_rate_ci_low != 0.5", "metrics.pref_win_rate_ci_low != 0.5"),
    (f"git_commit = '{SHA_A}'", f"tags.`git_commit` = '{SHA_A}'"),
    ("git_commit = 'a1b2c3d'", "tags.`git_commit` LIKE 'a1b2c3d%'"),  # a short commit matches its prefix
    ("prompt.version = 2 and genai.gates_passed = True",
     "tags.`prompt.version` = '2' and tags.`genai.gates_passed` = 'true'"),
    ("config_hash != \"abc\" and eval_set.hash = 'def'", "tags.`config_hash` != 'abc' and tags.`eval_set.hash` = 'def'"),
    ("llm.model_id = 'smollm2-135m-instruct' and rag.retriever_k = 4",
     "params.`llm.model_id` = 'smollm2-135m-instruct' and params.`rag.retriever_k` = '4'"),
    ("`rag.index.type` = hnsw and gates.f1 = '>= 0.5'", "params.`rag.index.type` = 'hnsw' and params.`gates.f1` = '>= 0.5'"),
    ("genai.kind = monitor and requests_total >= 100", "tags.`genai.kind` = 'monitor' and metrics.requests_total >= 100"),
    ("safety_critical_count == 0", "metrics.safety_critical_count = 0"),  # the gates' '==' is accepted
])
def test_translation_to_mlflow_grammar(expression: str, expected: str) -> None:
    assert to_mlflow_filter(expression) == expected
    view = parse_view("v", expression)
    assert (view.name, view.expression, view.mlflow_filter) == ("v", expression, expected)


def test_view_metrics_and_kind_selection() -> None:
    view = parse_view("release", RELEASE + " and em > 0.1 and git_commit = 'abcd'")
    assert view.metrics == ("em", "latency_p95_ms", "cost_per_question_usd")
    assert not view.selects_kind
    assert parse_view("m", "genai.kind = monitor").selects_kind


@pytest.mark.parametrize(("expression", "message"), [
    ("em >= 0.6 or f1 >= 0.5", "'or' is not supported: MLflow's run search has no OR"),
    ("em >= 0.6 OR f1 >= 0.5", "'or' is not supported"),
    ("latency_p95 <= 1200", "unknown name 'latency_p95' — did you mean 'latency_p95_ms'?"),
    ("f1_ci_lo >= 0.5", "did you mean 'f1_ci_low'?"),
    ("top_k = 4", "did you mean 'rag.retriever_k'?"),
    ("rag.topK = 4", "did you mean 'rag.retriever_k'?"),
    ("gates_passed = true", "did you mean 'genai.gates_passed'?"),
    ("metrics.em >= 0.6", "write 'em', not 'metrics.em'"),
    ("em => 1", "write '>=' (MLflow's operator), not '=>'"),
    ("(em > 0.5)", "no parentheses"),
    ("em >= 'high'", "'em' is a metric: compare it with a number"),
    ("em >= nan", "'em' is a metric: compare it with a number"),
    ("git_commit > 'a'", "'git_commit' is a run tag: MLflow compares it as text, with = or != only"),
    ("llm.temperature < 1", "'llm.temperature' is a config key (an MLflow param)"),
    ("git_commit != 'abc1'", "a short commit can only be matched with '='"),
    ("em >= 0.6 f1 >= 0.5", "expected 'and' after 'em >= 0.6', got 'f1'"),
    ("em >= 0.6 and", "expected a clause 'NAME OP VALUE'"),
    ("em >=", "expected a clause"),
    ("", "a view needs at least one clause"),
    ("prompt.id = 'qa", "a quote is not closed"),
    ("prompt.id = \"it's\"", "cannot hold quotes"),
    ("views.release = 'x'", "unknown name 'views.release'"),  # views are not params of the views
])
def test_refusals_say_why_and_what_to_write(expression: str, message: str) -> None:
    with pytest.raises(ViewError) as exc:
        parse_view("v", expression)
    assert message in str(exc.value)


def test_view_names_and_length_are_checked() -> None:
    with pytest.raises(ViewError, match="may hold only letters"):
        parse_view("my view", "em > 0.5")
    with pytest.raises(ViewError, match="MLflow stores at most 5000"):
        parse_view("long", " and ".join(["em > 0.5"] * 600))


def test_a_conftest_metric_is_a_view_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_genai.metrics.registry import METRICS, register_metric

    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))  # registrations end with the test
    with pytest.raises(ViewError, match="unknown name 'view_words'"):
        parse_view("short", "view_words <= 20")
    register_metric("view_words", doc="words in the answer")(lambda c, a, r: None)
    assert to_mlflow_filter("view_words <= 20 and view_words_ci_high < 30") == \
        "metrics.view_words <= 20 and metrics.view_words_ci_high < 30"


# ---------------------------------------------------------------- config


BASE = """\
version: 1
pipeline: builtin:llm
eval:
  set: evals/qa.jsonl
tracking:
  experiment: test-exp
"""


def write(tmp_path: Path, text: str, name: str = "genai.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_config_views_validated_at_load_with_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "views:\n  release: 'em >= 0.6 and latency_p95 <= 1200'\n"
                                  "  either: 'em >= 0.6 or f1 >= 0.5'\n  ok: 'f1 >= 0.5'\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    msg = str(exc.value)
    assert "(2 problem(s))" in msg
    assert f"{path}:8: views.release: unknown name 'latency_p95' — did you mean 'latency_p95_ms'?" in msg
    assert f"{path}:9: views.either: 'or' is not supported" in msg


def test_config_view_names_and_types_from_the_schema(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "views:\n  good: 'em > 0.5'\n  bad name: 'em > 0.5'\n  number: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    msg = str(exc.value)
    assert f"{path}:9: views.bad name: view name 'bad name' may hold only letters" in msg
    assert f"{path}:10: views.number: 3 is not a view: write a filter string" in msg


def test_views_are_not_part_of_config_hash(tmp_path: Path) -> None:
    plain = load_config(write(tmp_path, BASE, "a.yaml"), environ={})
    with_views = load_config(write(tmp_path, BASE + f"views:\n  release: '{RELEASE}'\n", "b.yaml"), environ={})
    assert with_views.get("views.release") == RELEASE
    assert with_views.hash == plain.hash
    assert load_config(write(tmp_path, BASE.replace("builtin:llm", "builtin:rag") + "rag:\n  corpus: c\n", "c.yaml"),
                       environ={}).hash != plain.hash


def test_views_module_and_config_load_stay_light(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + f"views:\n  release: '{RELEASE}'\n")
    code = ("import sys\nfrom pytest_genai.config import load_config\nimport pytest_genai.config.views\n"
            f"load_config({str(path)!r}, environ={{}})\nprint(sorted(m for m in ('mlflow', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- a real MLflow store


def client_of(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def log(client: Any, exp: str, name: str, start: int, metrics: dict[str, float], kind: str | None = "eval",
        tags: dict[str, str] | None = None, params: dict[str, str] | None = None) -> str:
    """A run as pytest-genai logs one: run name, genai.kind, git tags, metrics and params in one batch."""
    from mlflow.entities import Metric, Param, RunTag

    all_tags = {names.TAG_GIT_COMMIT: SHA_A, names.TAG_MLFLOW_GIT_COMMIT: SHA_A, names.TAG_GATES_PASSED: "true",
                **({names.TAG_KIND: kind} if kind else {}), **(tags or {})}
    run_id = client.create_run(exp, start_time=start, run_name=name).info.run_id
    client.log_batch(run_id, metrics=[Metric(k, v, start, 0) for k, v in metrics.items()],
                     params=[Param(k, v) for k, v in (params or {}).items()],
                     tags=[RunTag(k, v) for k, v in all_tags.items()])
    client.set_terminated(run_id)
    return run_id


@pytest.fixture
def store(mlflow_uri: str) -> dict[str, Any]:
    """Runs in time order (start times 1..8 s): which match RELEASE is in each name."""
    client = client_of(mlflow_uri)
    exp = client.create_experiment("test-exp")
    good = {"em": 0.7, "f1": 0.8, "latency_p95_ms": 1000.0, "cost_per_question_usd": 0.001}
    ids = {
        "match-old": log(client, exp, "match-old", 1000, {**good, "em": 0.65}, kind=None),  # before genai.kind
        "low-em": log(client, exp, "low-em", 2000, {**good, "em": 0.5}),
        "match": log(client, exp, "match", 3000, good, params={"llm.model_id": "m1"},
                     tags={names.TAG_STATUS: "complete"}),
        "monitor": log(client, exp, "monitor", 4000, good, kind="monitor"),
        "shard": log(client, exp, "shard", 5000, good, kind="shard"),
        "slow": log(client, exp, "slow", 6000, {**good, "latency_p95_ms": 1300.0}),
        "match-new": log(client, exp, "match-new", 7000, {**good, "cost_per_question_usd": 0.002},
                         params={"llm.model_id": "m2"}, tags={names.TAG_GIT_COMMIT: "f" * 40,
                                                              names.TAG_GATES_PASSED: "false"}),
        "deleted": log(client, exp, "deleted", 8000, good),
    }
    client.delete_run(ids["deleted"])
    return {"client": client, "exp": exp, "ids": ids, "uri": mlflow_uri}


def names_of(runs: list[Any]) -> list[str]:
    return [r.info.run_name for r in runs]


def test_find_runs_returns_exactly_the_matching_eval_runs_newest_first(store: dict[str, Any]) -> None:
    client, exp = store["client"], store["exp"]
    release = parse_view("release", RELEASE)
    assert names_of(find_runs(client, [exp], release, 50)) == ["match-new", "match", "match-old"]
    assert names_of(find_runs(client, [exp], release, 2)) == ["match-new", "match"]
    assert names_of(find_runs(client, [exp], parse_view("m", "llm.model_id = m1"), 50)) == ["match"]
    assert names_of(find_runs(client, [exp], parse_view("c", "git_commit = 'a1b2c3d' and em > 0.6"), 50)) == \
        ["slow", "match", "match-old"]  # a short commit, as users type it; match-new is at ffff...
    assert names_of(find_runs(client, [exp], parse_view("g", "genai.gates_passed = false"), 50)) == ["match-new"]
    # monitoring runs only when the view says so
    assert names_of(find_runs(client, [exp], parse_view("mon", "genai.kind = monitor and latency_p95_ms <= 1200"), 50)) \
        == ["monitor"]
    assert names_of(find_runs(client, [exp], None, 50)) == ["match-new", "slow", "match", "low-em", "match-old"]


def test_search_pages_through_the_store_and_counts_what_it_left_out(store: dict[str, Any]) -> None:
    client, exp = store["client"], store["exp"]
    found = search(client, [exp], parse_view("fast", "em >= 0.6 and latency_p95_ms <= 1200"), 3, page_size=1)
    assert names_of(list(found.runs)) == ["match-new", "match", "match-old"]  # shard and monitor skipped across pages
    assert found.left_out == 2
    found = search(client, [exp], parse_view("fast", "em >= 0.6 and latency_p95_ms <= 1200"), 1, page_size=1)
    assert names_of(list(found.runs)) == ["match-new"] and found.left_out == 0  # stops as soon as it has enough


def test_views_are_stored_on_the_experiment_and_rewritten_only_when_changed(store: dict[str, Any]) -> None:
    client, exp = store["client"], store["exp"]
    views = [parse_view("release", RELEASE), parse_view("cheap", "cost_per_question_usd <= 0.001")]
    assert store_views(client, exp, views) == ["release", "cheap"]
    assert client.get_experiment(exp).tags[TAG_VIEW_PREFIX + "release"] == RELEASE
    assert stored_views(client, exp) == {"cheap": "cost_per_question_usd <= 0.001", "release": RELEASE}
    assert store_views(client, exp, views) == []  # a session calls it on every run: nothing to write
    assert store_views(client, exp, [parse_view("cheap", "cost_per_question_usd <= 0.0005")]) == ["cheap"]
    assert stored_views(client, exp)["cheap"] == "cost_per_question_usd <= 0.0005"


def test_store_config_views_masks_secrets(store: dict[str, Any], tmp_path: Path) -> None:
    client, exp = store["client"], store["exp"]
    text = (BASE.replace("pipeline: builtin:llm", "pipeline: builtin:llm\nllm:\n  provider: openai_compatible\n"
                         "  base_url: http://127.0.0.1:1\n  api_key: ${VIEWS_TEST_KEY}")
            + "views:\n  leaky: \"prompt.id = 'sk-secret-value-123'\"\n  release: '" + RELEASE + "'\n")
    cfg = load_config(write(tmp_path, text), environ={"VIEWS_TEST_KEY": "sk-secret-value-123"})
    assert sorted(store_config_views(client, exp, cfg)) == ["leaky", "release"]
    assert stored_views(client, exp) == {"leaky": "prompt.id = '***'", "release": RELEASE}
    assert store_config_views(client, exp, load_config(write(tmp_path, BASE, "none.yaml"), environ={})) == []
    # the resolved config of a run folder (config.resolved.yaml, read back as a mapping) is accepted too
    assert store_config_views(client, exp, {"views": {"release": RELEASE, "new": "f1 >= 0.7"}}) == ["new"]
    assert stored_views(client, exp)["new"] == "f1 >= 0.7"


def test_ui_link_carries_the_same_filter() -> None:
    from urllib.parse import parse_qs, urlsplit

    view = parse_view("release", RELEASE)
    link = ui_link("http://user:pw@mlflow.internal:5000/", "7", view)
    assert link.url is not None and link.command is None
    assert link.url.startswith("http://mlflow.internal:5000/#/experiments/7/runs?searchFilter=")  # no credentials
    query = urlsplit(link.url.split("#", 1)[1]).query
    assert parse_qs(query) == {"searchFilter": [view.mlflow_filter]}
    local = ui_link("sqlite:////tmp/a b/mlflow.db", "7", view)
    assert local.url is None and local.command == "mlflow ui --backend-store-uri 'sqlite:////tmp/a b/mlflow.db'"
    assert str(local) == f"{local.command}  then open http://127.0.0.1:5000/{local.path}"
    assert ui_link(None, "0", None).path == "#/experiments/0/runs"


def test_the_ui_route_and_parameter_exist_in_the_installed_mlflow_ui() -> None:
    """The link's route and query parameter, checked against the UI MLflow ships (its built JS)."""
    import mlflow.server

    build = Path(mlflow.server.__file__).parent / "js" / "build" / "static" / "js"
    if not build.is_dir():
        pytest.skip("this MLflow install ships no UI build")
    text = "".join(p.read_text("utf-8", errors="replace") for p in build.glob("*.js"))
    assert '"/experiments/:experimentId/runs"' in text
    assert '["searchFilter","orderByKey","orderByAsc"' in text


# ---------------------------------------------------------------- `pytest-genai runs`


def runs_cli(argv: list[str]) -> tuple[int, list[str]]:
    """`pytest-genai runs ...` through the real command line entry point, output captured."""
    import contextlib
    import io

    from pytest_genai.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # errors stay on stderr, read with capsys
        code = main(["runs", *argv])
    return code, buf.getvalue().splitlines()


def project_config(tmp_path: Path, uri: str, views: dict[str, str]) -> Path:
    listed = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in views.items())
    return write(tmp_path, BASE + f"  uri: {uri}\nviews:\n" + listed)


def test_runs_view_prints_the_table_and_the_ui_command(store: dict[str, Any], tmp_path: Path) -> None:
    cfg = project_config(tmp_path, store["uri"], {"release": RELEASE, "quality": "f1 >= 0.8"})
    code, out = runs_cli(["--view", "release", "--config", str(cfg)])
    assert code == 0
    text = "\n".join(out)
    assert out[0] == f"view release: {RELEASE}"
    assert out[1] == "mlflow filter: " + parse_view("release", RELEASE).mlflow_filter
    assert out[2].startswith("3 matching run(s) in experiment 'test-exp' (id ")
    header = out[3].split()
    assert header == ["run", "id", "run", "name", "status", "em", "latency_p95_ms", "cost_per_question_usd", "f1",
                      "gates", "git", "started", "(UTC)"]
    rows = out[4:7]
    ids = store["ids"]
    assert [r.split()[0] for r in rows] == [ids["match-new"], ids["match"], ids["match-old"]]
    # status: the run's genai.status; MLflow's own for a run that has none (logged before the tag, other tools)
    assert rows[0].split()[1:9] == ["match-new", "finished", "0.7", "1000", "0.002", "0.8", "FAIL", "f" * 12]
    assert rows[1].split()[1:9] == ["match", "complete", "0.7", "1000", "0.001", "0.8", "pass", SHA_A[:12]]
    assert "1970-01-01 00:00" in rows[2]
    assert ids["monitor"] not in text and ids["low-em"] not in text and ids["deleted"] not in text
    assert "left out: 2 monitoring/shard run(s)" in text
    assert out[-1].startswith(f"MLflow UI: mlflow ui --backend-store-uri {store['uri']}  then open http://127.0.0.1:5000"
                              f"/#/experiments/{store['exp']}/runs?searchFilter=metrics.em%20%3E%3D%200.6")
    # the command stored the config's views on the experiment
    assert stored_views(store["client"], store["exp"]) == {"quality": "f1 >= 0.8", "release": RELEASE}


def test_runs_without_a_view_lists_the_views_and_the_latest_runs(store: dict[str, Any], tmp_path: Path) -> None:
    cfg = project_config(tmp_path, store["uri"], {"release": RELEASE})
    code, out = runs_cli(["--config", str(cfg), "--max", "2"])
    assert code == 0
    assert out[:3] == ["views (genai.yaml; stored on the experiment):", f"  release: {RELEASE}",
                       "latest 2 run(s) of experiment 'test-exp' (id " + f"{store['exp']}), tracking uri {store['uri']}:"]
    assert [r.split()[0] for r in out[4:6]] == [store["ids"]["match-new"], store["ids"]["slow"]]
    assert out[-1].endswith(f"#/experiments/{store['exp']}/runs")


def test_runs_exit_codes(store: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = project_config(tmp_path, store["uri"], {"release": RELEASE, "perfect": "em >= 0.99"})
    assert runs_cli(["--view", "releas", "--config", str(cfg)])[0] == 2
    assert "unknown view 'releas' — did you mean 'release'? (views: perfect, release)" in capsys.readouterr().err
    code, out = runs_cli(["--view", "perfect", "--config", str(cfg)])
    assert code == 1 and "no run matches this view" in out
    assert runs_cli(["--view", "release", "--config", str(cfg), "--experiment", "test-expt"])[0] == 2
    assert "no experiment 'test-expt'" in (err := capsys.readouterr().err) and "did you mean 'test-exp'?" in err
    assert runs_cli(["--config", str(tmp_path / "missing.yaml")])[0] == 2
    assert "cannot read config" in capsys.readouterr().err
    bad = write(tmp_path, BASE + f"  uri: {store['uri']}\nviews:\n  release: 'em >= 0.6 or f1 > 0.5'\n", "bad.yaml")
    assert runs_cli(["--config", str(bad)])[0] == 2
    assert f"{bad}:9: views.release: 'or' is not supported" in capsys.readouterr().err
    assert runs_cli(["--config", str(cfg), "--max", "0"])[0] == 2
    assert "--max must be at least 1" in capsys.readouterr().err


def test_runs_loads_the_conftest_beside_the_config(store: dict[str, Any], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """As `pytest` would: a view on a metric the project's conftest registers validates and lists."""
    from pytest_genai.metrics.registry import METRICS

    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))
    (tmp_path / "conftest.py").write_text(
        "from pytest_genai import register_metric\n\n"
        "@register_metric('view_words', doc='words in the answer')\n"
        "def view_words(case, answer, result):\n    return None\n")
    log(store["client"], store["exp"], "wordy", 9000, {"view_words": 3.0})
    code, out = runs_cli(["--view", "short", "--config", str(project_config(tmp_path, store["uri"],
                                                                              {"short": "view_words <= 5"}))])
    assert code == 0
    assert out[3].split()[5] == "view_words" and out[4].split()[1:4] == ["wordy", "finished", "3"]


def test_runs_never_creates_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "nothing-here.db"
    assert runs_cli(["--tracking-uri", f"sqlite:///{db}", "--config", str(write(tmp_path, BASE))])[0] == 2
    assert f"no MLflow store at {db}" in capsys.readouterr().err
    assert not db.exists()


def test_a_view_stored_on_the_experiment_lists_without_the_config(store: dict[str, Any], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store_views(store["client"], store["exp"], [parse_view("models", "llm.model_id = m2")])
    monkeypatch.chdir(tmp_path)  # no genai.yaml here
    code, out = runs_cli(["--view", "models", "--tracking-uri", store["uri"], "--experiment", "test-exp"])
    assert code == 0
    assert [r.split()[0] for r in out[4:]][:1] == [store["ids"]["match-new"]]
    assert out[3].split()[5:7] == ["em", "f1"]  # no view metrics: the headline ones the runs logged


def test_runs_view_on_runs_a_real_session_logged(project: Any) -> None:
    """End to end: two pytest-genai sessions log to MLflow; the view lists the one that meets it."""
    project.write_config(views__quality="f1 >= 0.9 and genai.gates_passed = true")
    assert project.run("--genai-config", "genai.yaml").ret == 0
    project.write_config(**{"llm__model_id": "random", "gates__f1": ">= 0.1",
                            "views__quality": "f1 >= 0.9 and genai.gates_passed = true"})
    assert project.run("--genai-config", "genai.yaml").ret == 0
    first, second = project.run_dirs()
    run_ids = [json.loads((d / "run.json").read_text())["tracking"]["run_id"] for d in (first, second)]
    code, out = runs_cli(["--view", "quality", "--config", str(project.path / "genai.yaml")])
    assert code == 0, out
    listed = [r.split()[0] for r in out[4:] if r and r.split()[0] in run_ids]
    assert listed == [run_ids[0]]  # the random answers' F1 is far below 0.9
    code, out = runs_cli(["--config", str(project.path / "genai.yaml")])
    assert [r.split()[0] for r in out if r and r.split()[0] in run_ids] == [run_ids[1], run_ids[0]]
