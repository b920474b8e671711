"""The local run folder: every result is on disk before any network call."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

SUMMARY = "summary.json"


def new_run_dir(root: Path, config_hash: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    root.mkdir(parents=True, exist_ok=True)
    base = root / f"{stamp}-{config_hash[:8]}"
    path, n = base, 1
    while True:
        try:
            path.mkdir()  # atomic: two sessions started in the same second get two folders
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def write_run_dir(run_dir: Path, session: Any, summary: Any, env: Any) -> None:
    """Artifacts as plain files: config, prompt, renders, eval-set snapshot, results, env, gates."""
    cfg = session.config
    red = session.redactor  # typed placeholders for PII and secrets in every file below

    def scrub(obj: Any) -> Any:  # PII placeholders, then secret values and URL credentials
        obj = red.obj(obj)
        if isinstance(obj, dict):
            return {k: scrub(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [scrub(v) for v in obj]
        return cfg.redact(obj) if isinstance(obj, str) else obj
    (run_dir / "config.resolved.yaml").write_text(
        f"# resolved from {cfg.path.name}; config_hash {cfg.hash}; secrets shown as their ${{ENV}} reference\n"
        + yaml.safe_dump(scrub(json.loads(json.dumps(cfg.public))), sort_keys=False), "utf-8")
    if session.prompt is not None:
        (run_dir / "prompt").mkdir()
        (run_dir / "prompt" / session.prompt.path.name).write_text(red.text(session.prompt.path.read_text("utf-8")) or "", "utf-8")
    (run_dir / "eval_set").mkdir()
    (run_dir / "eval_set" / session.eval_set.path.name).write_bytes(_snapshot(session.eval_set.raw, red))
    with (run_dir / "results.jsonl").open("w", encoding="utf-8") as fh:
        for r in summary.results:
            d = r.to_dict()
            d.pop("prompt")
            fh.write(dumps(d) + "\n")
    with (run_dir / "renders.jsonl").open("w", encoding="utf-8") as fh:
        for r in summary.results:
            fh.write(json.dumps({"id": r.id, "prompt": r.prompt}, ensure_ascii=False) + "\n")
    fingerprint = summary.tags.get("index.fingerprint")
    if fingerprint:
        from pytest_genai.rag.index import index_dir

        manifest = index_dir(fingerprint) / "manifest.json"
        if manifest.is_file():
            (run_dir / "index").mkdir()
            shutil.copyfile(manifest, run_dir / "index" / "manifest.json")
    (run_dir / "env").mkdir()
    (run_dir / "env" / "installed.txt").write_text(env.installed_text(), "utf-8")
    if env.lock_path is not None:
        shutil.copyfile(env.lock_path, run_dir / "env" / env.lock_path.name)
    (run_dir / "env" / "drift.json").write_text(json.dumps({
        "drift": env.drift, "mismatched": env.mismatched, "missing": env.missing, "extra": env.extra}, indent=2), "utf-8")
    (run_dir / "gates.json").write_text(dumps({
        "passed": summary.gates_passed, "enforced": summary.enforced, "partial": summary.partial,
        "gates": [g.to_dict() for g in summary.gates]}, indent=2), "utf-8")
    write_summary(run_dir, {
        "metrics": summary.metrics, "params": scrub(summary.params), "tags": scrub(summary.tags),
        "experiment": cfg.get("tracking.experiment"), "mlflow_run_id": None,
    })


def _snapshot(raw: bytes, red: Any) -> bytes:
    """The eval set as run, line for line; redacted when redaction is on (its hash tag is of the raw file)."""
    if not red.enabled:
        return raw
    lines = raw.decode("utf-8-sig").split("\n")
    out = [json.dumps(red.obj(json.loads(line)), ensure_ascii=False) if line.strip() else line for line in lines]
    return "\n".join(out).encode("utf-8")


def write_summary(run_dir: Path, data: dict[str, Any]) -> None:
    tmp = run_dir / (SUMMARY + ".tmp")
    tmp.write_text(dumps(data, indent=2, sort_keys=True), "utf-8")
    tmp.replace(run_dir / SUMMARY)


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / SUMMARY).read_text("utf-8"))


def dumps(data: Any, **kwargs: Any) -> str:
    """Strict JSON: NaN ("no data") becomes null instead of the invalid bare NaN."""
    return json.dumps(_nan_to_none(data), allow_nan=False, ensure_ascii=False, **kwargs)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj
