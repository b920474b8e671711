"""What makes a logged run read like an MLflow-native GenAI evaluation in the UI, from the run folder alone:
a descriptive run name, the eval set as its dataset input, the prompt in MLflow's Prompt Registry linked to the
run, and one trace per case (the gate table as its description is rendered by the caller: `log_run_dir(describe=)`).
Each is optional for the store: a store without a Prompt Registry or traces still gets the run, and says so in
`Tracking.warnings`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_genai import names
from pytest_genai.prompts import load_prompt
from pytest_genai.run_folder import PROMPT_DIR
from pytest_genai.runlog import RunRecord
from pytest_genai.tracking import mlflow_traces
from pytest_genai.tracking.mlflow_traces import TraceContext, build_traces

DATASET_SOURCE_TYPE = "local"  # mlflow.data's LocalArtifactDatasetSource: the UI shows the path
DIGEST_CHARS = 36  # MLflow's datasets.digest column holds 36 characters (of our sha256)


def run_name(record: RunRecord) -> str:
    """`rag_qa@1 · smollm2-135m-instruct · handbook · a7787a8`: prompt (or pipeline), model, eval set, commit;
    a shard says which."""
    p = record.provenance
    what = f"{p.prompt_id}@{p.prompt_version}" if p.prompt_id else (p.pipeline or "pipeline")
    parts = [what]
    model = str(record.params.get("llm.model_id") or "")
    if model:
        parts.append(model.rstrip("/").rsplit("/", 1)[-1])
    if p.eval_set_path:
        parts.append(Path(p.eval_set_path).stem)
    if p.git_commit and p.git_commit != "unknown":
        parts.append(p.git_commit[:7] + ("+dirty" if p.git_dirty else ""))
    if record.execution.shard:
        parts.append(f"shard {record.execution.shard}")
    return " · ".join(parts)[:250]


# --------------------------------------------------------------------------- dataset input

def log_dataset(client: Any, run_id: str, record: RunRecord) -> None:
    """The eval set as the run's dataset input (context `eval`): digest = our sha256 (cut to the column's 36
    characters), source = its path, profile = its row count, so the UI's Dataset column names it. Tried twice:
    MLflow's get-or-create of the dataset row is not atomic, and on a shared server the loser of two sessions
    creating it at once gets a unique-key error (3 of 100 sessions logging 20 at a time, `bench_server_logging.py`)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    p = record.provenance
    path = Path(p.eval_set_path)
    rows = int(record.metrics.get("cases_total", len(record.results)))  # the eval set's size, not this run's share
    dataset = Dataset(
        name=path.stem or "eval_set", digest=p.eval_set_hash[:DIGEST_CHARS], source_type=DATASET_SOURCE_TYPE,
        source=json.dumps({"uri": str(path)}),
        schema=json.dumps({"mlflow_colspec": [{"name": n, "type": t} for n, t in (
            ("id", "string"), ("question", "string"), ("answers", "string"), ("context", "string"),
            ("gold_doc_ids", "string"), ("tags", "string"))]}),
        profile=json.dumps({"num_rows": rows, "sha256": p.eval_set_hash}))
    inputs = [DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, names.DATASET_CONTEXT)])]
    try:
        client.log_inputs(run_id, datasets=inputs)
    except Exception:  # sessions logging the same eval set at the same moment race to create its dataset row
        client.log_inputs(run_id, datasets=inputs)  # (a unique-key conflict, the whole call undone): it is there now


# --------------------------------------------------------------------------- Prompt Registry

def register_prompt(client: Any, run_id: str, run_dir: Path, record: RunRecord,
                    experiment_id: str) -> tuple[str | None, str | None]:
    """The run's prompt in MLflow's Prompt Registry as name = prompt id, one MLflow version per id@version
    (found again by its tags), linked to the run. Returns (prompts:/NAME/VERSION or None, a warning or None).
    A registered id@version whose hash differs is an unbumped edit: not registered again, reported."""
    p = record.provenance
    if not p.prompt_id:
        return None, None

    folder = run_dir / PROMPT_DIR
    try:
        prompt = load_prompt(folder, p.prompt_id, str(p.prompt_version))
    except Exception as exc:  # the run folder's copy is what we register: without it there is nothing to send
        return None, f"prompt not registered: {exc}"
    existing = _registered_versions(client, p.prompt_id)
    same_ref = [v for v in existing if (v.tags or {}).get(names.TAG_PROMPT_VERSION) == str(p.prompt_version)]
    match = next((v for v in same_ref if (v.tags or {}).get(names.TAG_PROMPT_HASH) == p.prompt_hash), None)
    if match is None and same_ref:
        other = (same_ref[0].tags or {}).get(names.TAG_PROMPT_HASH, "")
        return None, (f"prompt not registered: {p.prompt_id}@{p.prompt_version} is registered as "
                      f"prompts:/{p.prompt_id}/{same_ref[0].version} with hash {other[:12]}, this run's is "
                      f"{str(p.prompt_hash)[:12]}: bump prompt.version for an edited prompt")
    if match is None:
        template: Any = prompt.template if isinstance(prompt.template, str) else [dict(m) for m in prompt.template]
        match = client.register_prompt(
            name=p.prompt_id, template=template,
            commit_message=f"pytest-genai: {p.prompt_id}@{p.prompt_version} ({str(p.prompt_hash)[:12]})",
            tags={names.TAG_PROMPT_VERSION: str(p.prompt_version), names.TAG_PROMPT_HASH: str(p.prompt_hash),
                  names.TAG_PROMPT_ID: p.prompt_id})
    client.link_prompt_version_to_run(run_id, match)
    _file_under_experiment(client, p.prompt_id, experiment_id)
    return f"prompts:/{match.name}/{match.version}", None


def _file_under_experiment(client: Any, name: str, experiment_id: str) -> None:
    """The experiment's Prompts tab lists a prompt whose experiment-ids tag holds it (`,1,3,`). MLflow adds the
    current experiment from a thread, and only when a version is registered: add this run's now, every run."""
    from mlflow.prompt.constants import PROMPT_EXPERIMENT_IDS_TAG_KEY

    prompt = client.get_prompt(name)
    ids = [i for i in str((prompt.tags or {}).get(PROMPT_EXPERIMENT_IDS_TAG_KEY, "")).split(",") if i.strip()]
    if experiment_id not in ids:
        client.set_prompt_tag(name, PROMPT_EXPERIMENT_IDS_TAG_KEY, "," + ",".join(ids + [experiment_id]) + ",")


def _registered_versions(client: Any, name: str) -> list[Any]:
    try:
        if client.get_prompt(name) is None:
            return []
    except Exception as exc:  # "not found" is how some stores say it
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
            return []
        raise
    out: list[Any] = []
    token = None
    while True:
        page = client.search_prompt_versions(name, max_results=100, page_token=token)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out


# --------------------------------------------------------------------------- traces

def log_case_traces(uri: str | None, client: Any, run_id: str, experiment_id: str, record: RunRecord,
                    started_ms: float) -> int:
    """One trace per case of the record (its results are sanitized), in batches; returns how many."""
    ctx = TraceContext(experiment_id=experiment_id, run_id=run_id,
                       model=str(record.params.get("llm.model_id") or "") or None,
                       provider=str(record.params.get("llm.provider") or "") or None,
                       prompt=(f"{record.provenance.prompt_id}@{record.provenance.prompt_version}"
                               if record.provenance.prompt_id else None),
                       config_hash=record.provenance.config_hash)
    traces = build_traces(record.results, ctx, started_ms)
    mlflow_traces.log_traces(uri, traces)  # through the module: a test replaces it with a refusing store
    return len(traces)
