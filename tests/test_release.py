"""The release loop on the bundled RAG example (SmolLM2 + MiniLM + faiss, four of its questions), against a real
sqlite store: --genai-register, a fresh process loading models:/NAME@staging with exactly the logged answers and
documents, `mlflow models serve`, promote → rollback → promote read back through MlflowClient; and the refusals
and bad input, on a custom pipeline (whose code travels with the model)."""

from __future__ import annotations

import json
import re
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_genai.testing.example_project import copy_example

pytestmark = pytest.mark.slow  # the bundled RAG example registered, loaded, served

MODEL = "pytest-genai-example"
BIN = Path(sys.executable).parent


def _env(uri: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    env.pop("PYTEST_ADDOPTS", None)
    env.update(extra)
    return env


def _pytest(path: Path, uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "--genai-config", "genai.yaml", "-p", "no:cacheprovider", "-q",
                           *args], cwd=path, env=_env(uri), capture_output=True, text=True, timeout=900)


def _cli(path: Path, uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_genai.cli", *args], cwd=path, env=_env(uri),
                          capture_output=True, text=True, timeout=600)


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _results(run_dir: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]
    return {r["id"]: r for r in rows}


def _runs(path: Path) -> list[Path]:
    return sorted((path / ".pytest-genai" / "runs").iterdir())


def test_release_loop_on_the_bundled_example(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> None:
    """One test, in order (it shares one registered model; under xdist a module fixture would be built per worker)."""
    released = _register_example(tmp_path_factory, mlflow_template)
    _check_version(released)
    _check_fresh_process(released, tmp_path_factory.mktemp("load"))
    _check_serve(released, tmp_path_factory.mktemp("serve"))
    _check_round_trip(released)
    _check_refusals(released, tmp_path_factory.mktemp("strict"))


def _register_example(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> dict[str, Any]:
    """The bundled example on its first four questions in a clean git checkout, registered once (`staging`)."""
    path = tmp_path_factory.mktemp("release")
    copy_example(path, model_name=MODEL)
    shutil.copyfile(mlflow_template, path / "mlflow.db")
    uri = f"sqlite:///{path / 'mlflow.db'}"
    started = time.perf_counter()
    result = _pytest(path, uri, "--genai-register", "--genai-cache", "record")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"path": path, "uri": uri, "stdout": result.stdout, "run_dir": _runs(path)[-1],
            "seconds": time.perf_counter() - started}


def _check_version(released: dict[str, Any]) -> None:
    out = released["stdout"]
    assert f"registered: {MODEL} version 1, alias staging -> 1" in out
    client = _client(released["uri"])
    record = json.loads((released["run_dir"] / "run.json").read_text())
    run_id = record["tracking"]["run_id"]
    version = client.get_model_version_by_alias(MODEL, "staging")
    assert str(version.version) == "1"
    tags = version.tags
    p = record["provenance"]
    assert tags["genai.eval_run_id"] == run_id
    assert tags["config_hash"] == p["config_hash"]
    assert tags["eval_set.hash"] == p["eval_set_hash"]
    assert tags["prompt.hash"] == p["prompt_hash"] and tags["prompt.id"] == "rag_qa" and tags["prompt.version"] == "1"
    assert tags["index.fingerprint"] == p["index_fingerprint"]
    assert tags["git_commit"] == p["git_commit"] and len(p["git_commit"]) == 40
    assert tags["env.lock_hash"] == p["env_lock_hash"]
    for key, sha in p["model_hashes"].items():
        assert tags[key] == sha
    assert {k for k in tags if k.startswith("gate.")} == {"gate.hit_at_k", "gate.error_rate", "gate.latency_p95_ms"}
    assert all(tags[k].startswith("pass ") for k in tags if k.startswith("gate."))
    assert version.description.startswith("gates 3/3 passed: ")
    assert client.get_run(run_id).data.tags["genai.registered"] == f"{MODEL}/1@staging"
    # MLflow 3's LoggedModel: from this run, carrying the run's metrics
    assert version.source.startswith("models:/m-")  # the sqlite registry keeps the LoggedModel in the source URI
    logged = client.get_logged_model(version.model_id or version.source.split("/")[-1])
    assert logged.source_run_id == run_id
    assert {m.key: m.value for m in logged.metrics}["hit_at_k"] == record["metrics"]["hit_at_k"]
    # a model logged from code, with the lock's pins as requirements, and the bundle (index included)
    import mlflow
    dl = Path(released["path"]).parent / (Path(released["path"]).name + "-download")  # outside the checkout: it stays clean
    from pytest_genai.tracking.mlflow_client import use_tracking_uri

    with use_tracking_uri(released["uri"]):  # models:/ resolves through the process-wide registry URI
        model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}/1", dst_path=str(dl)))
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["model_code_path"].endswith("model_code.py")
    assert mlmodel["signature"]["inputs"] and "retrieved_doc_ids" in mlmodel["signature"]["outputs"]
    reqs = (model_dir / "requirements.txt").read_text().split()
    assert "faiss-cpu==1.15.1" in reqs and "mlflow==3.17.2" in reqs
    bundle = next(model_dir.rglob("bundle.json")).parent
    assert sorted(f.name for f in (bundle / "index").iterdir()) == ["chunks.jsonl", "index.faiss", "manifest.json", "vectors.npy"]
    assert not list(model_dir.rglob("*.gguf")) and not list(model_dir.rglob("*.safetensors"))  # weights stay in their packages


LOAD = textwrap.dedent("""
    import json, sys
    import mlflow
    model = mlflow.pyfunc.load_model(sys.argv[1])
    rows = json.loads(sys.argv[2])
    print("PREDICTIONS " + json.dumps(model.predict(rows)))
""")


def _check_fresh_process(released: dict[str, Any], tmp_path: Path) -> None:
    logged = _results(released["run_dir"])
    cases = [json.loads(line) for line in (released["path"] / "eval_sets" / "handbook.jsonl").read_text().splitlines()]
    rows = [{"id": c["id"], "question": c["question"]} for c in cases]
    cache = tmp_path / "empty-cache"  # no index cache here: the model must bring its own index, not re-embed
    result = subprocess.run([sys.executable, "-c", LOAD, f"models:/{MODEL}@staging", json.dumps(rows)], cwd=tmp_path,
                            env=_env(released["uri"], PYTEST_GENAI_CACHE_DIR=str(cache)), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("PREDICTIONS ", 1)[1])
    assert len(out) == len(cases)
    for case, row in zip(cases, out):
        want = logged[case["id"]]
        assert row["answer"] == want["answer"], case["id"]
        assert row["retrieved_doc_ids"] == [r["doc_id"] for r in want["retrieved"]], case["id"]
    assert not (cache / "indexes").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_serve(released: dict[str, Any], tmp_path: Path) -> None:
    logged = _results(released["run_dir"])
    cases = [json.loads(line) for line in (released["path"] / "eval_sets" / "handbook.jsonl").read_text().splitlines()][:2]
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@staging", "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=tmp_path, env=_env(released["uri"]), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(1)
        body = json.dumps({"dataframe_records": [{"id": c["id"], "question": c["question"]} for c in cases]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        predictions = json.loads(urllib.request.urlopen(req, timeout=600).read())["predictions"]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    assert [p["answer"] for p in predictions] == [logged[c["id"]]["answer"] for c in cases]
    assert [p["retrieved_doc_ids"] for p in predictions] == [[r["doc_id"] for r in logged[c["id"]]["retrieved"]] for c in cases]


def _check_round_trip(released: dict[str, Any]) -> None:
    path, uri = released["path"], released["uri"]
    client = _client(uri)
    first = _cli(path, uri, "promote", MODEL, "--from", "staging", "--to", "production", "--new-alias", "--reeval", "--reason",
                 "first release")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "re-evaluated v1 on 4 cases: 4 identical" in first.stdout
    assert not (path / ".pytest-genai" / "requests.jsonl").exists()  # a re-evaluation is not production traffic
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == "1"
    # a second version, from a replay of the recorded answers (same pipeline, no model calls)
    again = _pytest(path, uri, "--genai-register", "--genai-cache", "replay")
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"registered: {MODEL} version 2, alias staging -> 2" in again.stdout
    assert _cli(path, uri, "promote", MODEL, "--from", "staging", "--to", "production").returncode == 0
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == "2"
    back = _cli(path, uri, "rollback", MODEL)
    assert back.returncode == 0, back.stderr
    assert "production -> version 1 (was 2)" in back.stdout
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == "1"
    assert str(client.get_model_version_by_alias(MODEL, "staging").version) == "2"
    assert _cli(path, uri, "promote", MODEL, "--from", "staging", "--to", "production").returncode == 0
    model = client.get_registered_model(MODEL)
    assert {a: str(v) for a, v in model.aliases.items()} == {"staging": "2", "production": "2"}
    history = json.loads(model.tags["genai.alias_history"])
    assert [(h["alias"], h["action"], h["version"], h["previous"]) for h in history] == [
        ("staging", "register", "1", None), ("production", "promote", "1", None), ("staging", "register", "2", "1"),
        ("production", "promote", "2", "1"), ("production", "rollback", "1", "2"), ("production", "promote", "2", "1")]
    assert all(h["by"] and h["at"] for h in history)
    promoted = json.loads(client.get_model_version(MODEL, "2").tags["genai.promoted.production"])
    assert promoted["action"] == "promote" and promoted["previous"] == "1"
    listing = _cli(path, uri, "models", MODEL)
    assert listing.returncode == 0
    assert "v2       production,staging  3/3" in listing.stdout and "v1" in listing.stdout


def _check_refusals(released: dict[str, Any], tmp_path: Path) -> None:
    path, uri = released["path"], released["uri"]
    client = _client(uri)
    before = client.get_registered_model(MODEL).aliases
    strict = yaml.safe_load((path / "genai.yaml").read_text())
    strict["gates"]["f1"] = ">= 0.99"
    (tmp_path / "strict.yaml").write_text(yaml.safe_dump(strict))
    for name in ("corpus", "prompts", "eval_sets"):
        (tmp_path / name).symlink_to(path / name)
    shutil.copyfile(path / "requirements.lock", tmp_path / "requirements.lock")
    refused = _cli(path, uri, "promote", MODEL, "--from", "staging", "--to", "canary", "--new-alias", "--config",
                   str(tmp_path / "strict.yaml"))
    assert refused.returncode == 2
    assert re.search(r"FAIL +f1 ", refused.stdout) and "does not pass strict.yaml now" in refused.stderr
    for args, message in [
        (("promote", "no-such-model", "--from", "staging", "--to", "production"), "no registered model 'no-such-model'"),
        (("promote", "pytest-genai-exampel", "--from", "staging", "--to", "production"), "did you mean 'pytest-genai-example'"),
        (("promote", MODEL, "--from", "stagin", "--to", "production"), "has no alias 'stagin'"),
        (("promote", MODEL, "--from", "staging", "--to", "prodution"), "has never had alias 'prodution' — did you mean "
                                                                      "'production'? (known aliases: production, staging)"),
        (("rollback", MODEL, "--alias", "canary"), "has no alias 'canary'"),
    ]:
        r = _cli(path, uri, *args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
    assert dict(client.get_registered_model(MODEL).aliases) == dict(before)  # nothing moved
