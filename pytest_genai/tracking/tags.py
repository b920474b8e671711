"""MLflow tags of a run, derived from its record (canonical names from names.py)."""

from __future__ import annotations

from typing import Any

from pytest_genai import names
from pytest_genai.runlog import INTERRUPTED, RUNNING


def _flag(value: bool | None) -> str:
    return "unknown" if value is None else str(value).lower()


def run_tags(record: Any) -> dict[str, str]:
    p, x = record.provenance, record.execution
    tags = {
        names.TAG_KIND: "eval",
        names.TAG_GIT_COMMIT: p.git_commit,
        names.TAG_GIT_DIRTY: _flag(p.git_dirty),
        names.TAG_GIT_BRANCH: p.git_branch,
        names.TAG_CONFIG_HASH: p.config_hash,
        names.TAG_EVAL_SET_HASH: p.eval_set_hash,
        names.TAG_ENV_LOCK_HASH: p.env_lock_hash or "none",
        names.TAG_ENV_DRIFT: "n/a" if p.env_drift is None else str(p.env_drift),
        names.TAG_ENV_PYTHON: p.python,
        names.TAG_ENV_PLATFORM: p.platform,
        names.TAG_SEED: str(p.seed),
        names.TAG_REDACTION: p.redaction,
        "safety.redact": str(p.redaction != "off").lower(),
        names.TAG_PARTIAL: str(record.status != "complete").lower(),
        names.TAG_STATUS: record.status,
        # a run that never ended (killed) or was interrupted passed nothing, whatever its finished cases say
        names.TAG_GATES_PASSED: str(record.gates_passed and record.status not in (RUNNING, INTERRUPTED)).lower(),
        names.TAG_SCHEMA_VERSION: str(record.schema_version),
        "genai.plan": x.plan,
        "genai.concurrency": str(x.size if x.plan == "pool" else 1),
        "genai.batch_size": str(x.size if x.plan == "batches" else 1),
        names.TAG_REPEAT: str(x.repeat),
    }
    if getattr(x, "pass_policy", None):
        tags[names.TAG_PASS_POLICY] = x.pass_policy
    shard, group = getattr(x, "shard", None), getattr(x, "group", None)
    if shard:  # one shard of an eval: never mistaken for a full run (promotion and baselines read genai.kind/status)
        tags[names.TAG_KIND] = "shard"
        tags[names.TAG_SHARD] = shard
    if group:
        tags[names.TAG_GROUP] = group
    merged = getattr(x, "merged_runs", ())
    if merged:
        tags[names.TAG_MERGED_RUNS] = ",".join(merged)[:5000]
    if p.git_commit != "unknown":
        tags[names.TAG_MLFLOW_GIT_COMMIT] = p.git_commit
    if p.prompt_id is not None:
        tags[names.TAG_PROMPT_ID] = p.prompt_id
        tags[names.TAG_PROMPT_VERSION] = str(p.prompt_version)
        tags[names.TAG_PROMPT_HASH] = str(p.prompt_hash)
    if p.index_fingerprint:
        tags[names.TAG_INDEX_FINGERPRINT] = p.index_fingerprint
    for key, value in p.model_hashes.items():
        tags[key] = value
    b = getattr(record, "baseline", None)
    if b is not None:
        tags[names.TAG_BASELINE_REF] = b.ref or ""
        if b.run_id:
            tags[names.TAG_BASELINE_RUN_ID] = b.run_id
        if b.model_version:
            tags[names.TAG_BASELINE_MODEL_VERSION] = b.model_version
        if b.intersect:
            tags[names.TAG_BASELINE_INTERSECT] = "true"
    return tags
