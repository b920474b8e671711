"""Saved views on the MLflow experiment (tag `genai.view.<name>` = the expression) and the run search by a view:
the tracking side of `views:` (config/views.py parses them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from pytest_genai import names
from pytest_genai.config.views import TAG_VIEW_PREFIX, View
from pytest_genai.sanitize import Sanitizer

LISTED_KINDS = (None, "eval")  # genai.kind of the runs listed unless a view names genai.kind itself


def store_views(client: Any, experiment_id: str, views: Iterable[View] | Mapping[str, str]) -> list[str]:
    """Tag the experiment `genai.view.<name>` = expression (views, or name -> expression); only the tags that
    differ are written (a session calls this on every run). Returns the names written. Views removed from a config
    stay on the experiment (another config may log to it)."""
    pairs = list(views.items()) if isinstance(views, Mapping) else [(v.name, v.expression) for v in views]
    if not pairs:
        return []
    current = dict(client.get_experiment(experiment_id).tags or {})
    written = []
    for name, expression in pairs:
        key = TAG_VIEW_PREFIX + str(name)
        if current.get(key) != expression:
            client.set_experiment_tag(experiment_id, key, expression)
            written.append(str(name))
    return written


def store_config_views(client: Any, experiment_id: str, config: Any) -> list[str]:
    """For the MLflow logging of a session, after it found or created the experiment. `config` is a GenaiConfig or
    the resolved config as a mapping (a run folder's config.resolved.yaml); its views were validated when it was
    loaded, so they are stored as written, through the sanitizer's secrets layer (config text, not case data).
    Returns the names written."""
    views = config.get("views") or {}
    if not isinstance(views, Mapping) or not views:
        return []
    clean = Sanitizer.from_config(config).secrets_only()
    return store_views(client, experiment_id, {str(n): clean.text(str(e)) or "" for n, e in views.items()})


def stored_views(client: Any, experiment_id: str) -> dict[str, str]:
    """name -> expression of the views stored on the experiment."""
    tags = client.get_experiment(experiment_id).tags or {}
    return {k[len(TAG_VIEW_PREFIX):]: v for k, v in sorted(tags.items()) if k.startswith(TAG_VIEW_PREFIX)}


@dataclass(frozen=True)
class Found:
    runs: tuple[Any, ...]  # mlflow.entities.Run, newest first
    left_out: int  # runs the filter matched but whose genai.kind is not listed (monitor, shard), among those read


def find_runs(client: Any, experiment_ids: Sequence[str], view: View | None, max_results: int = 50) -> list[Any]:
    """The newest `max_results` runs matching the view: eval runs (genai.kind eval, or none: runs logged before
    the tag or by other tools), monitoring and shard runs only when the view names genai.kind itself."""
    return list(search(client, experiment_ids, view, max_results).runs)


def search(client: Any, experiment_ids: Sequence[str], view: View | None, max_results: int = 50,
           page_size: int | None = None) -> Found:
    """`find_runs` with the count of what it left out; pages through MLflow until `max_results` are kept."""
    every_kind = view is not None and view.selects_kind
    page = page_size or min(1000, max(50, 2 * max_results))
    kept: list[Any] = []
    left_out = 0
    token = None
    while len(kept) < max_results:
        batch = client.search_runs(list(experiment_ids), filter_string=view.mlflow_filter if view else "",
                                   order_by=["attributes.start_time DESC"], max_results=page, page_token=token)
        for run in batch:
            if every_kind or run.data.tags.get(names.TAG_KIND) in LISTED_KINDS:
                kept.append(run)
            else:
                left_out += 1
        token = getattr(batch, "token", None)
        if not token:
            break
    return Found(tuple(kept[:max_results]), left_out)
