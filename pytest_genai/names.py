"""Canonical names: one name per thing across YAML keys, MLflow params/metrics/tags and docs."""

from __future__ import annotations

# Metric names live in the metric registry (pytest_genai/metrics/registry.py, built-ins in builtin.py).

# Tags set on every run.
TAG_GIT_COMMIT = "git_commit"
TAG_MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_DIRTY = "git_dirty"
TAG_GIT_BRANCH = "git_branch"
TAG_CONFIG_HASH = "config_hash"
TAG_PROMPT_ID = "prompt.id"
TAG_PROMPT_VERSION = "prompt.version"
TAG_PROMPT_HASH = "prompt.hash"
TAG_EVAL_SET_HASH = "eval_set.hash"
TAG_MODEL_SHA256 = "llm.model_sha256"
TAG_ENV_LOCK_HASH = "env.lock_hash"
TAG_ENV_DRIFT = "env.drift"
TAG_ENV_PYTHON = "env.python"
TAG_ENV_PLATFORM = "env.platform"
TAG_SEED = "genai.seed"
TAG_INDEX_FINGERPRINT = "index.fingerprint"
TAG_INDEX_VERSION = "index.version"
TAG_PIPELINE_ARTIFACTS_HASH = "pipeline.artifacts.hash"  # on a model version: sha256 over its artifacts' per-file hashes
TAG_GATES_PASSED = "genai.gates_passed"
TAG_PARTIAL = "genai.partial"
TAG_STATUS = "genai.status"
TAG_REPEAT = "genai.repeat"  # the run's repeats a case (--genai-repeat, else eval.repeat): the k of pass_at_k
TAG_PASS_POLICY = "genai.pass_policy"  # sampled repeats: the eval.pass_policy the case verdicts followed
TAG_RESUMED_FROM = "genai.resumed_from"  # --genai-resume: the interrupted run's MLflow run id (else its folder's name)
TAG_RESUMED_CASES = "genai.resumed_cases"  # --genai-resume: how many cases the interrupted run had finished
TAG_KIND = "genai.kind"
TAG_REDACTION = "genai.redaction"
TAG_SCHEMA_VERSION = "genai.schema_version"
TAG_BASELINE_RUN_ID = "genai.baseline_run_id"
TAG_BASELINE_REF = "genai.baseline"  # the baseline as given (--genai-baseline / compare.baseline)
TAG_BASELINE_MODEL_VERSION = "genai.baseline_model_version"  # NAME/VERSION when resolved from models:/
TAG_BASELINE_INTERSECT = "genai.baseline_intersect"  # "true": compared on the shared case ids only
TAG_SHARD = "genai.shard"  # "I/N" on a shard run (genai.kind=shard)
TAG_GROUP = "genai.group"  # the eval a shard belongs to; also on its parent run (genai.kind=eval)
TAG_MERGED_RUNS = "genai.merged_runs"  # on a merged parent: the shard run ids, comma-separated, in shard order
TAG_PREF_JUDGE = "genai.pref_judge"  # "f1" or "llm:<model_id>@<prompt id>@<version>" (compare.judge)
TAG_PREF_JUDGE_PROMPT_HASH = "genai.pref_judge_prompt_hash"
TAG_PREF_JUDGE_CACHE_HITS = "genai.pref_judge_cache_hits"
TAG_PREF_JUDGE_CACHE_MISSES = "genai.pref_judge_cache_misses"
TAG_VIEW_PREFIX = "genai.view."  # experiment tag genai.view.<name> = a saved view's expression (views:)
TAG_TRACES = "genai.traces"  # how many case traces were logged with the run (0: tracking.traces is false)
TAG_PROMPT_URI = "genai.prompt_uri"  # prompts:/NAME/VERSION: the run's prompt in MLflow's Prompt Registry
TAG_TRACKING_WARNINGS = "genai.tracking_warnings"  # what the store did not take (traces, dataset, prompt)
TAG_RUN_NOTE = "mlflow.note.content"  # the run's description in the MLflow UI: the gate table
DATASET_CONTEXT = "eval"  # mlflow.data.context of the eval set logged as the run's dataset input
TAG_REGISTERED = "genai.registered"  # on the eval run: NAME/VERSION it became, or why it did not
# The process that created (or is filling) a run: a command that finds the run RUNNING with its owner gone marks it
# interrupted (tracking/owner.py). The host is a digest (hostname, machine id, pid namespace), never the hostname.
TAG_OWNER_HOST = "genai.owner.host"
TAG_OWNER_BOOT = "genai.owner.boot"  # the host's boot id (Linux): another boot means the owner is gone
TAG_OWNER_PID = "genai.owner.pid"
TAG_OWNER_STARTED = "genai.owner.started"  # the pid's start (Linux: /proc/<pid>/stat field 22), against pid reuse
TAG_SUPERSEDED_BY = "genai.superseded_by"  # on a shard group's extra parent: the parent merge kept (then deleted)

# Model-version tags (the eval behind a version) and registered-model tags (alias history).
TAG_EVAL_RUN_ID = "genai.eval_run_id"
TAG_BUNDLE_FORMAT = "genai.bundle_format"
TAG_PACKAGED_BY = "genai.pytest_genai_version"
TAG_GATE_PREFIX = "gate."  # gate.<metric> = "pass|FAIL <value> <expression>"
TAG_PROMOTED_PREFIX = "genai.promoted."  # genai.promoted.<alias> = {by, at, reason, from}
TAG_ALIAS_HISTORY = "genai.alias_history"  # JSON list of {alias, version, previous, action, by, at, reason}

# Names users type for a canonical key. Matched case-insensitively on the last path
# segment wherever it appears, so `rag.topK` and a top-level `topK` both point home.
SYNONYMS: dict[str, str] = {
    "k": "rag.retriever_k",
    "topk": "rag.retriever_k",
    "top_k": "rag.retriever_k",
    "retriever_top_k": "rag.retriever_k",
    "num_results": "rag.retriever_k",
    "temp": "llm.temperature",
    "maxtokens": "llm.max_tokens",
    "max_new_tokens": "llm.max_tokens",
    "max_length": "llm.max_tokens",
    "model": "llm.model_id",
    "model_name": "llm.model_id",
    "modelid": "llm.model_id",
    "embedding_model": "rag.embed_model",
    "embedder": "rag.embed_model",
    "embeddings_model": "rag.embed_model",
    "chunksize": "rag.chunk_size",
    "chunkoverlap": "rag.chunk_overlap",
    "overlap": "rag.chunk_overlap",
    "random_seed": "seed",
    "dataset": "eval.set",
    "eval_set": "eval.set",
    "evalset": "eval.set",
    "tracking_uri": "tracking.uri",
    "experiment_name": "tracking.experiment",
    "thresholds": "gates",
    "api_base": "llm.base_url",
    "openai_api_base": "llm.base_url",
    "apikey": "llm.api_key",
}

# A monitoring run (genai.kind=monitor, `pytest-genai monitor`): the version watched and the window.
TAG_MODEL_NAME = "genai.model_name"
TAG_MODEL_VERSION = "genai.model_version"
TAG_MODEL_ID = "genai.model_id"
TAG_ALIAS = "genai.alias"
TAG_WINDOW = "genai.window"
TAG_WINDOW_START = "genai.window_start"
TAG_WINDOW_END = "genai.window_end"
TAG_SLO_PASSED = "genai.slo_passed"
TAG_SINK = "genai.monitor_sink"
