"""Promotion: register a finished run's model as a new version and move `champion` only if it wins.

The version carries its lineage (source run, metric, value) as tags; a version that does not
beat the current champion is registered as `challenger` with the reason in its description.
"""
from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.errors import PlatformError
from registry.lock import promotion_lock

CHAMPION, CHALLENGER = "champion", "challenger"
# Run tags a version inherits: the data it was trained on and the data's licence (several of the
# public sets are non-commercial, which whoever serves the model must know).
DATASET_TAG, DATA_LICENCE_TAG, DATA_SOURCE_TAG = "dataset", "dataset_licence", "data"


@dataclass
class Promotion:
    version: str
    alias: str  # "champion" or "challenger"
    reason: str


def _champion_value(client: MlflowClient, name: str, metric: str) -> tuple[str, float] | None:
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    tagged = current.tags.get(f"metric.{metric}")
    if tagged is not None:
        return current.version, float(tagged)
    run_metric = client.get_run(current.run_id).data.metrics.get(metric) if current.run_id else None
    return (current.version, run_metric) if run_metric is not None else None


def best_of(items, value_of, greater_is_better: bool):
    """The item with the best value: the one rule by which a grid and the `promote` entry point pick."""
    return (max if greater_is_better else min)(items, key=value_of)


def lineage_of(run) -> dict[str, str]:
    """Where a version came from, read off its run, so every way of promoting tags the same keys:
    the run, its grid, the spec, the cell, the data it read and the data's licence."""
    tags, lineage = run.data.tags, {"source_run_name": run.info.run_name or "",
                                    "experiment_spec": run.data.params.get("name", ""),
                                    "parent_run_id": run.data.tags.get("mlflow.parentRunId", "")}
    lineage.update({k: tags[k] for k in ("model", DATASET_TAG, "method", DATA_LICENCE_TAG) if k in tags})
    lineage.update({k: v for k, v in tags.items() if k.startswith(DATA_SOURCE_TAG + ".")})
    return lineage


def beats(candidate: float, incumbent: float, greater_is_better: bool) -> bool:
    return candidate > incumbent if greater_is_better else candidate < incumbent


def _existing_version(client: MlflowClient, name: str, run_id: str):
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    match = next((v for v in versions if v.tags.get("source_run_id") == run_id), None)
    # search results leave aliases out; the version itself carries them
    return client.get_model_version(name, match.version) if match else None


def promote(*, model_uri: str, run_id: str, name: str, metric: str, greater_is_better: bool = True,
            lineage: dict[str, str] | None = None, violations: list[str] | tuple = ()) -> Promotion:
    """Register `model_uri` (logged by the finished run `run_id`) and set its alias.

    `champion` moves only if the run beats the current champion on `metric` and `violations`
    (constraints the caller checked, e.g. latency or adapter size) is empty. A run that already
    has a version is not registered again, so promoting twice is safe.
    """
    client = MlflowClient()
    run = client.get_run(run_id)
    if run.info.status != "FINISHED":
        raise PlatformError(f"run {run_id} is {run.info.status}, only FINISHED runs are promoted")
    if metric not in run.data.metrics:
        raise PlatformError(f"run {run_id} has no metric '{metric}' to promote on")
    with promotion_lock(name):  # the read of the champion and the alias write, as one step
        existing = _existing_version(client, name, run_id)
        if existing is not None:
            aliases = ", ".join(f"@{a}" for a in existing.aliases) or "no alias"
            return Promotion(version=str(existing.version), alias=existing.aliases[0] if existing.aliases else "",
                             reason=f"run {run_id} is already version {existing.version} of {name} ({aliases})")
        value = run.data.metrics[metric]
        incumbent = _champion_value(client, name, metric)
        tags = {"source_run_id": run_id, f"metric.{metric}": str(value), **lineage_of(run), **(lineage or {})}
        version = mlflow.register_model(model_uri, name, tags=tags).version
        if violations:
            alias, reason = CHALLENGER, f"{metric}={value:.4f} but constraints not met: " + "; ".join(violations)
        elif incumbent is None:
            alias, reason = CHAMPION, f"first champion: {metric}={value:.4f}"
        elif beats(value, incumbent[1], greater_is_better):
            alias, reason = CHAMPION, f"{metric}={value:.4f} beats champion v{incumbent[0]} ({incumbent[1]:.4f})"
        else:
            alias, reason = CHALLENGER, f"{metric}={value:.4f} does not beat champion v{incumbent[0]} ({incumbent[1]:.4f})"
        client.set_registered_model_alias(name, alias, version)
        client.update_model_version(name, version, description=reason)
        return Promotion(version=str(version), alias=alias, reason=reason)
