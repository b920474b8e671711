"""Sharded evals: `--genai-shard I/N --genai-group ID` runs a stable share of the cases as a child run of the group's
parent; `pytest-genai merge ID` fills the parent with the metrics, CIs and gates of the same cases run unsharded.
A stub pipeline that states its own latency keeps every metric deterministic, so "identical" means identical."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from pytest_genai.shard import merge as merge_cmd
from pytest_genai.shard.select import parse_shard, shard_of
from tests.conftest import Project
from pytest_genai.testing.example_project import write_env_lock

N = 30
PIPELINE = '''
from pytest_genai import Answer, Usage

def factory(config):
    def pipeline(case):
        i = int(case.id[1:])
        text = "no idea" if i % 3 == 0 else case.context.split()[0]
        return Answer(text=text, contexts=(case.context,), usage=Usage(5 + i % 4, len(text.split())),
                      latency_ms=10.0 + (i * 37) % 50)
    return pipeline
'''


def cases(n: int = N) -> list[dict[str, Any]]:
    return [{"id": f"q{i:03d}", "question": f"Which word names item {i}?", "answers": [f"w{i}"],
             "context": f"w{i} names item {i}."} for i in range(n)]


@pytest.fixture
def sp(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    for var in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT"):
        monkeypatch.delenv(var, raising=False)
    project.pytester.makepyfile(genai_shard_pipeline=PIPELINE)
    project.config.update({"pipeline": "genai_shard_pipeline:factory",
                           "gates": {"f1": ">= 0.5", "em": "ci_low >= 0.3", "latency_p95_ms": "<= 1000"}})
    project.write_cases(cases())
    project.write_config()
    return project


def run_shard(p: Project, shard: str, group: str, config: str = "genai.yaml", *args: str) -> pytest.RunResult:
    return p.run("--genai-config", config, "--genai-shard", shard, "--genai-group", group, *args)


def merge(p: Project, group: str, *extra: str, config: str = "genai.yaml") -> int:
    parser = argparse.ArgumentParser()
    merge_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["merge", group, "--config", str(p.path / config), *extra])
    return merge_cmd.run(args)


def run_json(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())


def client(p: Project) -> MlflowClient:
    return MlflowClient(tracking_uri=p.mlflow_uri)


def test_two_shards_merged_equal_the_unsharded_run_and_the_parent_is_the_eval(sp: Project, capsys: Any) -> None:
    full = sp.run("--genai-config", "genai.yaml")
    assert full.ret == 0, full.stdout.str()
    unsharded = run_json(sp.run_dirs()[-1])
    assert unsharded["status"] == "complete"

    shard_runs = []
    for label in ("1/2", "2/2"):
        res = run_shard(sp, label, "g1")
        out = res.stdout.str()
        assert res.ret == 0, out
        i, n = parse_shard(label)
        mine = [c["id"] for c in cases() if shard_of(c["id"], n) == i]
        assert 0 < len(mine) < N
        assert f"{N - len(mine)} deselected" in out
        rec = run_json(sp.run_dirs()[-1])
        assert rec["status"] == "partial" and rec["execution"]["shard"] == label and rec["execution"]["group"] == "g1"
        assert not rec["gates_enforced"]
        assert rec["tags"]["genai.kind"] == "shard" and rec["tags"]["genai.shard"] == label
        assert rec["tags"]["genai.group"] == "g1"
        shard_runs.append(rec["tracking"]["run_id"])

    c = client(sp)
    parents = {c.get_run(r).data.tags["mlflow.parentRunId"] for r in shard_runs}
    assert len(parents) == 1
    parent_id = parents.pop()
    pending = c.get_run(parent_id)
    assert pending.data.tags["genai.status"] == "pending" and pending.data.tags["genai.kind"] == "eval"

    capsys.readouterr()
    assert merge(sp, "g1") == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "merged 2 shards of group g1: status complete" in out and "gates passed: 3 of 3" in out

    merged = run_json(sp.run_dirs()[-1])
    assert merged["status"] == "complete" and merged["gates_enforced"] is True
    assert merged["tracking"]["run_id"] == parent_id
    assert merged["execution"]["merged_runs"] == shard_runs
    # every metric (the registry's aggregates and their CI bounds) and every CI is the unsharded run's
    assert merged["metrics"] == unsharded["metrics"]
    assert merged["cis"] == unsharded["cis"]
    assert [g["value"] for g in merged["gates"]] == [g["value"] for g in unsharded["gates"]]
    assert [r["id"] for r in map(json.loads, (sp.run_dirs()[-1] / "results.jsonl").read_text().splitlines())] == \
        [c["id"] for c in cases()]

    parent = c.get_run(parent_id)
    full_run = c.get_run(unsharded["tracking"]["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics == full_run.data.metrics
    assert parent.data.params == full_run.data.params
    tags = parent.data.tags
    assert tags["genai.status"] == "complete" and tags["genai.partial"] == "false" and tags["genai.kind"] == "eval"
    assert tags["genai.group"] == "g1" and tags["genai.gates_passed"] == "true"
    assert tags["genai.merged_runs"] == ",".join(shard_runs)
    assert {"run.json", "results.jsonl", "gates.json", "shards.json"} <= {a.path for a in c.list_artifacts(parent_id)}
    # what baselines and promotion read: the parent's record, complete, over every case
    from pytest_genai.tracking.runref import resolve_baseline

    base = resolve_baseline(parent_id, sp.mlflow_uri, sp.path)
    assert base.record is not None and base.record.status == "complete" and len(base.record.results) == N
    # a shard as a baseline is refused: it is not the eval set
    from pytest_genai.compare.baseline import check_comparable

    shard_base = resolve_baseline(shard_runs[0], sp.mlflow_uri, sp.path)
    assert shard_base.record is not None
    assert "partial run" in (check_comparable(shard_base.record, base.record.provenance.eval_set_hash,
                                              [c["id"] for c in cases()], intersect=False) or "")


def test_gates_are_reported_on_a_shard_and_enforced_on_the_merge(sp: Project, capsys: Any) -> None:
    sp.write_config(gates={"f1": ">= 0.9"})
    for label in ("1/2", "2/2"):
        res = run_shard(sp, label, "g2")
        assert res.ret == 0, res.stdout.str()
        assert "not enforced" in res.stdout.str()
    enforced = run_shard(sp, "1/2", "g2-enforced", "genai.yaml", "--genai-enforce-gates")
    assert enforced.ret == 1, enforced.stdout.str()
    capsys.readouterr()
    assert merge(sp, "g2") == 1
    out = capsys.readouterr().out
    assert "GATES FAILED" in out, out
    assert client(sp).get_run(run_json(sp.run_dirs()[-1])["tracking"]["run_id"]).data.tags["genai.gates_passed"] == "false"


def test_the_last_shard_to_finish_merges_with_auto_merge(sp: Project) -> None:
    """--genai-auto-merge: shard 1 sees shard 2 missing and leaves the parent pending; shard 2, the last, merges the
    group (the same record as `pytest-genai merge`), and a failed gate of the whole eval fails its session."""
    full = sp.run("--genai-config", "genai.yaml")
    assert full.ret == 0, full.stdout.str()
    unsharded = run_json(sp.run_dirs()[-1])
    first = run_shard(sp, "1/2", "g-auto", "genai.yaml", "--genai-auto-merge")
    assert first.ret == 0 and "merged:" not in first.stdout.str()
    shard_one = run_json(sp.run_dirs()[-1])["tracking"]["run_id"]
    parent_id = client(sp).get_run(shard_one).data.tags["mlflow.parentRunId"]
    assert client(sp).get_run(parent_id).data.tags["genai.status"] == "pending"
    last = run_shard(sp, "2/2", "g-auto", "genai.yaml", "--genai-auto-merge")
    out = last.stdout.str()
    assert last.ret == 0, out
    assert f"merged: this was the last of the 2 shards of group g-auto: parent run {parent_id}" in out
    merged = run_json(sp.run_dirs()[-1])
    assert merged["status"] == "complete" and merged["tracking"]["run_id"] == parent_id
    assert merged["metrics"] == unsharded["metrics"] and merged["cis"] == unsharded["cis"]
    assert client(sp).get_run(parent_id).data.tags["genai.status"] == "complete"
    # the whole eval fails a gate only the merge can check: the last shard's session fails, the first does not
    sp.write_config(gates={"f1": ">= 0.9"})
    assert run_shard(sp, "2/2", "g-auto-fail", "genai.yaml", "--genai-auto-merge").ret == 0
    failing = run_shard(sp, "1/2", "g-auto-fail", "genai.yaml", "--genai-auto-merge")
    assert failing.ret == 1 and "GATES FAILED" in failing.stdout.str(), failing.stdout.str()


def test_a_missing_or_duplicated_shard_is_an_error_naming_it(sp: Project, capsys: Any) -> None:
    assert run_shard(sp, "1/2", "g3").ret == 0
    capsys.readouterr()
    assert merge(sp, "g3") == 2
    assert "shard 2/2 is missing" in capsys.readouterr().err
    assert merge(sp, "g3", "--shards", "3") == 2
    err = capsys.readouterr().err
    assert "is not one of 3 shards" in err
    assert run_shard(sp, "1/2", "g3").ret == 0
    assert run_shard(sp, "2/2", "g3").ret == 0
    assert merge(sp, "g3") == 2
    err = capsys.readouterr().err
    assert "shard 1/2 is duplicated (2 runs" in err and "2/2" not in err.split("duplicated")[1].split(";")[0]
    assert merge(sp, "nothing-here") == 2
    assert "no shard run of group nothing-here" in capsys.readouterr().err


def test_a_shard_from_another_config_is_refused(sp: Project, capsys: Any) -> None:
    sp.write_config("other.yaml", llm__model_id="other")
    assert run_shard(sp, "1/2", "g4").ret == 0
    assert run_shard(sp, "2/2", "g4", "other.yaml").ret == 0
    capsys.readouterr()
    assert merge(sp, "g4") == 2
    err = capsys.readouterr().err
    assert "shard 2/2" in err and "another config_hash" in err, err


def test_shard_membership_is_stable_when_cases_are_added(sp: Project) -> None:
    ids = [f"case-{i}" for i in range(500)]
    before = {i: shard_of(i, 4) for i in ids}
    assert set(before.values()) == {1, 2, 3, 4}
    assert all(150 > sum(s == k for s in before.values()) > 100 for k in (1, 2, 3, 4))  # roughly even
    assert {i: shard_of(i, 4) for i in ["new-case", *ids]} == {**before, "new-case": shard_of("new-case", 4)}
    # through pytest: the cases it selects are the hash's, and adding a case keeps every old case where it was
    res = run_shard(sp, "2/3", "g5", "genai.yaml", "--co", "-q")
    old = {line.split("::")[1] for line in res.stdout.lines if "::" in line}
    assert old == {c["id"] for c in cases() if shard_of(c["id"], 3) == 2}
    sp.write_cases(cases(N + 5))
    res = run_shard(sp, "2/3", "g5", "genai.yaml", "--co", "-q")
    new = {line.split("::")[1] for line in res.stdout.lines if "::" in line}
    assert old <= new and new - old == {c["id"] for c in cases(N + 5)[N:] if shard_of(c["id"], 3) == 2}


@pytest.mark.parametrize("spec, message", [("3/2", "between 1 and N"), ("0/2", "between 1 and N"),
                                           ("1-2", "expected I/N"), ("1/0", "between 1 and N")])
def test_a_bad_shard_is_a_usage_error(sp: Project, spec: str, message: str) -> None:
    res = sp.run("--genai-config", "genai.yaml", "--genai-shard", spec, "--genai-group", "g")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str()


def test_the_group_is_required_outside_github_actions_and_defaults_inside(sp: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    res = sp.run("--genai-config", "genai.yaml", "--genai-shard", "1/2")
    assert res.ret == pytest.ExitCode.USAGE_ERROR and "--genai-shard needs --genai-group" in res.stderr.str()
    res = sp.run("--genai-config", "genai.yaml", "--genai-group", "lonely")
    assert res.ret == pytest.ExitCode.USAGE_ERROR and "goes with --genai-shard" in res.stderr.str()
    monkeypatch.setenv("GITHUB_RUN_ID", "987")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")
    sp.write_config(tracking__enabled=False)
    res = sp.run("--genai-config", "genai.yaml", "--genai-shard", "1/2")
    assert res.ret == 0, res.stdout.str()
    assert run_json(sp.run_dirs()[-1])["execution"]["group"] == "987-2"


def test_concurrent_shards_converge_on_one_parent(sp: Project) -> None:
    """The find-or-create race: shards that each created a parent (clocks disagreeing) are settled by merge."""
    from pytest_genai.tracking.mlflow_store import experiment_id, group_parent, group_runs

    c = client(sp)
    exp = experiment_id(c, "test-exp")
    first = group_parent(c, exp, "race")
    assert group_parent(c, exp, "race") == first  # a later shard finds it
    # a duplicate another shard kept (it did not see the first one): merge must settle on one parent
    dup = c.create_run(exp, tags={"genai.group": "race", "genai.kind": "eval", "genai.status": "pending"},
                       start_time=c.get_run(first).info.start_time + 5).info.run_id
    assert [r.info.run_id for r in group_runs(c, exp, "race", "eval")] == [first, dup]
    assert run_shard(sp, "1/2", "race").ret == 0
    assert run_shard(sp, "2/2", "race").ret == 0
    shard_ids = [r.info.run_id for r in group_runs(c, exp, "race", "shard")]
    c.set_tag(shard_ids[0], "mlflow.parentRunId", dup)
    assert merge(sp, "race") == 0
    assert [r.info.run_id for r in group_runs(c, exp, "race", "eval")] == [first]
    assert {c.get_run(r).data.tags["mlflow.parentRunId"] for r in shard_ids} == {first}
    assert running_in_group(c, exp, "race") == []


def running_in_group(c: MlflowClient, exp: str, group: str) -> list[str]:
    """Every run of the group still RUNNING in the store, deleted ones included (MLflow keeps a deleted run's
    status as it was, for good)."""
    from mlflow.entities import ViewType

    return [f"{r.info.run_id} {r.data.tags.get('genai.kind')} {r.info.lifecycle_stage}"
            for r in c.search_runs([exp], f"tags.`genai.group` = '{group}'", run_view_type=ViewType.ALL)
            if r.info.status == "RUNNING"]


class Turns:
    """Two shard processes finding or creating their group's parent at the same moment, played by two threads
    with real clients of the real sqlite store: their searches and creations are let through in `order` (then
    freely), the interleaving a CI matrix meets by chance."""

    def __init__(self, order: list[tuple[str, str]]) -> None:
        import threading

        self.order, self.next, self.cv = order, 0, threading.Condition()

    def client(self, who: str, real: MlflowClient) -> Any:
        turns = self

        class Paced:
            def __getattr__(self, name: str) -> Any:
                call = getattr(real, name)
                if name not in ("search_runs", "create_run"):
                    return call

                def in_turn(*args: Any, **kwargs: Any) -> Any:
                    with turns.cv:
                        assert turns.cv.wait_for(lambda: turns.next >= len(turns.order)
                                                 or turns.order[turns.next] == (who, name), timeout=60)
                    try:
                        return call(*args, **kwargs)
                    finally:
                        with turns.cv:
                            turns.next += 1
                            turns.cv.notify_all()
                return in_turn
        return Paced()

    def race(self, uri: str, exp: str, group: str, start_a: int, start_b: int) -> dict[str, str]:
        from concurrent.futures import ThreadPoolExecutor

        from pytest_genai.tracking.mlflow_store import group_parent

        with ThreadPoolExecutor(2) as pool:
            kept = {who: pool.submit(group_parent, self.client(who, MlflowClient(tracking_uri=uri)), exp, group,
                                     start_time=start)
                    for who, start in (("A", start_a), ("B", start_b))}
            return {who: f.result() for who, f in kept.items()}


def test_racing_shards_leave_no_parent_running_after_the_merge(sp: Project) -> None:
    """Item 11: two shards each see no parent and create one. When each looks again after both exist, the one
    whose parent is younger gives way (its parent superseded: FINISHED, deleted); when one looks again before the
    other created its parent, both keep their own, and merge supersedes the extra one. Either way, after the merge
    no run of the group is RUNNING in the store (a deleted run included: MLflow kept those RUNNING forever)."""
    from mlflow.entities import ViewType

    from pytest_genai.tracking.mlflow_store import experiment_id, group_runs

    c = client(sp)
    exp = experiment_id(c, "test-exp")
    both_created = [("A", "search_runs"), ("B", "search_runs"), ("A", "create_run"), ("B", "create_run")]
    kept = Turns(both_created).race(sp.mlflow_uri, exp, "race-1", 2000, 1000)
    assert kept["A"] == kept["B"]
    (loser,) = [r for r in c.search_runs([exp], "tags.`genai.group` = 'race-1'", run_view_type=ViewType.ALL)
                if r.info.run_id != kept["A"]]
    assert loser.info.lifecycle_stage == "deleted" and loser.info.status == "FINISHED"
    assert loser.data.tags["genai.superseded_by"] == kept["A"] and loser.data.tags["genai.status"] == "superseded"

    one_looked_early = [("A", "search_runs"), ("B", "search_runs"), ("A", "create_run"), ("A", "search_runs"),
                        ("B", "create_run")]
    kept = Turns(one_looked_early).race(sp.mlflow_uri, exp, "race-2", 2000, 1000)
    assert kept["A"] != kept["B"]  # reproduced: two parents, each kept by its shard, both pending and RUNNING
    assert {r.info.run_id: r.info.status for r in group_runs(c, exp, "race-2", "eval")} == \
        {kept["A"]: "RUNNING", kept["B"]: "RUNNING"}
    # what earlier releases left behind: a parent deleted without being terminated (RUNNING for good)
    legacy = c.create_run(exp, start_time=3000, tags={"genai.group": "race-2", "genai.kind": "eval",
                                                      "genai.status": "pending"}).info.run_id
    c.delete_run(legacy)
    assert run_shard(sp, "1/2", "race-2").ret == 0
    assert run_shard(sp, "2/2", "race-2").ret == 0
    shard_ids = [r.info.run_id for r in group_runs(c, exp, "race-2", "shard")]
    c.set_tag(shard_ids[0], "mlflow.parentRunId", kept["A"])  # as shard A logged it: under its own parent
    assert merge(sp, "race-2") == 0
    assert running_in_group(c, exp, "race-2") == []
    parent = kept["B"]  # the oldest
    assert [r.info.run_id for r in group_runs(c, exp, "race-2", "eval")] == [parent]
    assert c.get_run(parent).info.status == "FINISHED" and c.get_run(parent).data.tags["genai.status"] == "complete"
    assert {c.get_run(r).data.tags["mlflow.parentRunId"] for r in shard_ids} == {parent}
    for extra in (kept["A"], legacy):
        run = c.get_run(extra)
        assert (run.info.status, run.info.lifecycle_stage) == ("FINISHED", "deleted")
        assert run.data.tags["genai.superseded_by"] == parent and run.data.tags["genai.status"] == "superseded"


@pytest.mark.slow  # the PostgreSQL + MLflow server
def test_shards_merged_on_the_real_server(sp: Project, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch,
                                          capsys: Any) -> None:
    """PostgreSQL + MLflow server with basic auth: shards log as children, merge fills the parent."""
    for k, v in mlflow_server.env().items():
        monkeypatch.setenv(k, v)
    sp.write_config(tracking__uri=None, tracking__experiment="shards-on-server")
    assert sp.run("--genai-config", "genai.yaml").ret == 0
    unsharded = run_json(sp.run_dirs()[-1])
    ids = []
    for label in ("1/2", "2/2"):
        assert run_shard(sp, label, "srv-1").ret == 0
        ids.append(run_json(sp.run_dirs()[-1])["tracking"]["run_id"])
    capsys.readouterr()
    assert merge(sp, "srv-1") == 0, capsys.readouterr()
    merged = run_json(sp.run_dirs()[-1])
    c = MlflowClient(tracking_uri=mlflow_server.uri)
    parent = c.get_run(merged["tracking"]["run_id"])
    assert parent.data.metrics == c.get_run(unsharded["tracking"]["run_id"]).data.metrics
    assert parent.data.tags["genai.status"] == "complete"
    assert {c.get_run(r).data.tags["mlflow.parentRunId"] for r in ids} == {parent.info.run_id}


def test_the_merged_parent_registers_and_promotes(sp: Project, capsys: Any) -> None:
    """Registry promotion sees the parent: the version's eval run is the parent run, and `promote` accepts it."""
    from pytest_genai.cli import main as cli

    write_env_lock(sp.path / "requirements.lock")
    sp.write_config(env={"lock_file": "requirements.lock"},
                    registry={"model_name": "sharded-qa", "require_clean_git": False})
    for label in ("1/2", "2/2"):
        res = run_shard(sp, label, "reg", "genai.yaml", "--genai-register")
        assert res.ret == 0 and "not registering sharded-qa: the run is partial" in res.stdout.str(), res.stdout.str()
    capsys.readouterr()
    assert merge(sp, "reg", "--register") == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "registered: sharded-qa version 1, alias staging -> 1" in out, out
    parent_id = run_json(sp.run_dirs()[-1])["tracking"]["run_id"]
    c = client(sp)
    assert c.get_model_version("sharded-qa", "1").tags["genai.eval_run_id"] == parent_id
    assert cli(["promote", "sharded-qa", "--from", "staging", "--to", "production", "--new-alias", "--config",
                str(sp.path / "genai.yaml"), "--tracking-uri", sp.mlflow_uri]) == 0, capsys.readouterr()
    assert str(c.get_model_version_by_alias("sharded-qa", "production").version) == "1"


def test_a_shard_under_xdist_runs_exactly_its_cases(sp: Project) -> None:
    sp.write_config(tracking__enabled=False)
    res = run_shard(sp, "2/2", "gx", "genai.yaml", "-n", "2")
    assert res.ret == 0, res.stdout.str()
    mine = {c["id"] for c in cases() if shard_of(c["id"], 2) == 2}
    assert {r["id"] for r in sp.last_results()} == mine
    assert run_json(sp.run_dirs()[-1])["execution"]["shard"] == "2/2"
