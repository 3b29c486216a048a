"""Resuming a half-finished grid: a cell that already FINISHED under a parent run that did not
(killed, failed, or still marked running after a crash), nor did any grid that resumed it, is
reused instead of trained again. The cell that was training resumes from its checkpoint
(`pipelines/checkpoint.py`, through `pipelines/cell.py`).

A cell is identified by a hash of every spec field that shaped it plus a fingerprint of its
data, so a changed hyperparameter or an edited data file runs the cell afresh.
"""
from __future__ import annotations

import hashlib
import json

import mlflow
from mlflow import MlflowClient

from pipelines.tasks.language_modeling import SAMPLE_PROMPTS
from pipelines.tracking import paged_runs, quoted
from pipelines.train_settings import HOW_RUN

RESUMED_BY = "resumed_by"


# Spec fields added after grids were first keyed: left out of the key while at their default, so
# a grid interrupted before they existed resumes its finished cells instead of training them again.
ADDED_FIELD_DEFAULTS = {"train.max_grad_norm": 1.0, "train.label_smoothing": 0.0, "language_modeling.response_field": None,
                        "language_modeling.windows": 100, "language_modeling.prompt_tokens": 64,
                        "language_modeling.continuation_tokens": 64, "dataset.licence": None,
                        "dataset.drop_empty": False, "eval.batch_size": None, "model.scratch": None,
                        "language_modeling.sample_prompts": list(SAMPLE_PROMPTS), "language_modeling.sample_tokens": 48,
                        "dataset.exclude_leaking": False}
_ABSENT = object()


def cell_key(params: dict, fingerprint: str) -> str:
    params = {k: v for k, v in params.items() if ADDED_FIELD_DEFAULTS.get(k, _ABSENT) != v and k not in HOW_RUN}
    payload = json.dumps({"params": params, "data": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:20]


def reusable_cells(keys: set[str]) -> dict[str, mlflow.entities.Run]:
    """Finished child runs with one of `keys` whose grid was interrupted and not yet resumed."""
    client = MlflowClient()
    experiment = mlflow.active_run().info.experiment_id
    found: dict[str, mlflow.entities.Run] = {}
    parents: dict[str, mlflow.entities.Run] = {}
    for key in sorted(keys):
        finished = paged_runs(client, [experiment], f"attributes.status = 'FINISHED' AND tags.cell_key = {quoted(key)}"
                              " AND tags.model_uri LIKE '%'", order_by=["attributes.start_time DESC"])
        for run in finished:
            parent_id = run.data.tags.get("mlflow.parentRunId")
            if parent_id and _grid_unfinished(client, parent_id, parents):
                found[key] = run
                break
    return found


def _grid_unfinished(client, parent_id: str, parents: dict) -> bool:
    """Whether the grid of `parent_id` never finished: neither it nor any grid that resumed it
    (a grid killed twice resumes the first one's cells through the second)."""
    seen = set()
    while parent_id and parent_id not in seen:
        seen.add(parent_id)
        parent = parents.get(parent_id) or parents.setdefault(parent_id, client.get_run(parent_id))
        if parent.info.status == "FINISHED":
            return False
        parent_id = parent.data.tags.get(RESUMED_BY)
    return True


def mark_resumed(runs, by_run_id: str) -> None:
    client = MlflowClient()
    for parent_id in {r.data.tags["mlflow.parentRunId"] for r in runs}:
        client.set_tag(parent_id, RESUMED_BY, by_run_id)
