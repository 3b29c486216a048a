"""Promotion: register a finished run's model as a new version and move `champion` only if it wins.

The version carries its lineage (source run, metric, value, the eval data's name and digest) as
tags; a version that does not beat the current champion is registered as `challenger` with the
reason in its description.

Scores compare only on the same rows: the champion's score counts if it was scored on data of the
candidate's digest, either as it was promoted or re-scored on that data by `pipelines.evaluate`
(whose metrics are linked to the champion's logged model and the dataset). Otherwise the champion
stays, and the candidate waits as `challenger` with a reason that names both data sets and the
command that re-scores the champion; promoting the candidate's run again then decides it.
"""
from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.errors import PlatformError
from pipelines.tracked_data import evaluation_input
from registry.lock import promotion_lock

CHAMPION, CHALLENGER = "champion", "challenger"
# Run tags a version inherits: the data it was trained on and the data's licence (several of the
# public sets are non-commercial, which whoever serves the model must know).
DATASET_TAG, DATA_LICENCE_TAG, DATA_SOURCE_TAG = "dataset", "dataset_licence", "data"
# The data a version's score is on (the run's evaluation input), and the mark of a version that
# waits for a champion scored on that data (its run may be promoted again to decide it).
EVAL_DATA_TAG, EVAL_DIGEST_TAG, EVAL_SOURCE_TAG = "eval_data", "eval_digest", "eval_source"
AWAITS_TAG = "awaits_comparable_champion"


@dataclass
class Promotion:
    version: str
    alias: str  # "champion" or "challenger"
    reason: str


@dataclass
class Champion:
    version: str
    data: dict[str, str]  # its eval_* tags: the data it was promoted on (none for an older version)
    value: float | None  # its metric on the candidate's eval data; None: never scored on that data
    rescored_by: str = ""  # the `evaluate` run the value comes from, when not the promoted score


def _champion(client: MlflowClient, name: str, metric: str, digest: str | None) -> Champion | None:
    """The current champion with its score on the eval data of `digest`; None if there is no
    champion, or it has no `metric` on the very data (the candidate then wins as before)."""
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    data = {k: current.tags[k] for k in (EVAL_DATA_TAG, EVAL_DIGEST_TAG, EVAL_SOURCE_TAG) if k in current.tags}
    if digest is not None and data.get(EVAL_DIGEST_TAG) == digest:
        tagged = current.tags.get(f"metric.{metric}")
        if tagged is not None:
            return Champion(current.version, data, float(tagged))
        run_metric = client.get_run(current.run_id).data.metrics.get(metric) if current.run_id else None
        return Champion(current.version, data, run_metric) if run_metric is not None else None
    value, run_id = _rescored(client, name, current.version, metric, digest) if digest else (None, "")
    return Champion(current.version, data, value, run_id)


def _rescored(client: MlflowClient, name: str, version: str, metric: str, digest: str) -> tuple[float | None, str]:
    """(the latest `metric` of the version's logged model on data of `digest`, the run that scored
    it): what `pipelines.evaluate` logs when it scores a model, linked to the model and the data."""
    try:
        model_id = mlflow.models.get_model_info(f"models:/{name}/{version}").model_id
        metrics = client.get_logged_model(model_id).metrics if model_id else None
    except (MlflowException, OSError):  # a version whose model cannot be read has no re-score
        return None, ""
    found = [m for m in metrics or [] if m.key == metric and m.dataset_digest == digest]
    latest = max(found, key=lambda m: m.timestamp, default=None)
    return (latest.value, latest.run_id) if latest else (None, "")


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
    scored_on = evaluation_input(run)  # none for a run logged before runs recorded their data
    if scored_on is not None:
        lineage.update({EVAL_DATA_TAG: scored_on.name, EVAL_DIGEST_TAG: scored_on.digest,
                        EVAL_SOURCE_TAG: scored_on.source})
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

    `champion` moves only if the run beats the current champion on `metric`, on the same eval
    data, and `violations` (constraints the caller checked, e.g. latency or adapter size) is empty.
    A run that already has a version is not registered again, so promoting twice is safe; one
    whose version waits for a champion scored on its data is decided again.
    """
    client = MlflowClient()
    run = client.get_run(run_id)
    if run.info.status != "FINISHED":
        raise PlatformError(f"run {run_id} is {run.info.status}, only FINISHED runs are promoted")
    if metric not in run.data.metrics:
        raise PlatformError(f"run {run_id} has no metric '{metric}' to promote on")
    with promotion_lock(name):  # the read of the champion and the alias write, as one step
        existing = _existing_version(client, name, run_id)
        if existing is not None and AWAITS_TAG not in existing.tags:
            aliases = ", ".join(f"@{a}" for a in existing.aliases) or "no alias"
            return Promotion(version=str(existing.version), alias=existing.aliases[0] if existing.aliases else "",
                             reason=f"run {run_id} is already version {existing.version} of {name} ({aliases})")
        value = run.data.metrics[metric]
        tags = {"source_run_id": run_id, f"metric.{metric}": str(value), **lineage_of(run), **(lineage or {})}
        champion = _champion(client, name, metric, tags.get(EVAL_DIGEST_TAG))
        if violations:
            alias, reason = CHALLENGER, f"{metric}={value:.4f} but constraints not met: " + "; ".join(violations)
        elif champion is None:
            alias, reason = CHAMPION, f"first champion: {metric}={value:.4f}"
        elif champion.value is None:
            alias, reason = CHALLENGER, _data_differs(name, metric, value, champion, tags, run.data.params)
        else:
            alias, reason = _against(metric, value, greater_is_better, champion)
        awaits = champion is not None and champion.value is None and not violations
        if existing is not None:
            return _decided_again(client, name, existing, alias, reason, awaits)
        version = mlflow.register_model(model_uri, name, tags=tags).version
        if awaits:  # the champion has no score on this data yet: promoting this run again decides it
            client.set_model_version_tag(name, version, AWAITS_TAG, champion.version)
        client.set_registered_model_alias(name, alias, version)
        client.update_model_version(name, version, description=reason)
        return Promotion(version=str(version), alias=alias, reason=reason)


def _against(metric: str, value: float, greater_is_better: bool, champion: Champion) -> tuple[str, str]:
    """(alias, reason) for a candidate scored on the data the champion's value is on."""
    scored = f", re-scored on this data by run {champion.rescored_by}" if champion.rescored_by else ""
    against = f"champion v{champion.version} ({champion.value:.4f}{scored})"
    if beats(value, champion.value, greater_is_better):
        return CHAMPION, f"{metric}={value:.4f} beats {against}"
    return CHALLENGER, f"{metric}={value:.4f} does not beat {against}"


def _decided_again(client: MlflowClient, name: str, existing, alias: str, reason: str, awaits: bool) -> Promotion:
    """A version that waited for a comparable champion: it takes @champion if it now wins; else its
    aliases stay as they are (a newer challenger keeps @challenger)."""
    if alias == CHAMPION:
        client.set_registered_model_alias(name, CHAMPION, existing.version)
    if not awaits:  # decided, one way or the other
        client.delete_model_version_tag(name, existing.version, AWAITS_TAG)
    client.update_model_version(name, existing.version, description=reason)
    kept = CHAMPION if alias == CHAMPION else (existing.aliases[0] if existing.aliases else "")
    return Promotion(version=str(existing.version), alias=kept, reason=reason)


def _data_differs(name: str, metric: str, value: float, champion: Champion, tags: dict[str, str],
                  params: dict[str, str]) -> str:
    """Why a candidate is not compared with the champion, naming both data sets, and what to run."""
    def described(data: dict[str, str]) -> str:
        if EVAL_DIGEST_TAG not in data:
            return "data it did not record"
        return f"{data.get(EVAL_DATA_TAG, '?')} (digest {data[EVAL_DIGEST_TAG]}, from {data.get(EVAL_SOURCE_TAG, '?')})"

    reason = (f"{metric}={value:.4f} not compared: eval data differs: champion v{champion.version} scored on "
              f"{described(champion.data)}, candidate on {described(tags)}")
    if EVAL_DIGEST_TAG not in tags:
        return reason + "; only a run that recorded its eval data can replace the champion"
    source = tags.get(EVAL_SOURCE_TAG, "")
    data = source if source and " " not in source else "<the candidate's eval rows>"  # a held-out or capped part
    fields = "".join(f" --{flag} {params[key]}" for flag, key in (("text-field", "dataset.text_field"),
                                                                  ("target-field", "dataset.target_field"))
                     if key in params)
    return (reason + f"; re-score the champion on the same rows with `python -m pipelines.evaluate "
            f"models:/{name}/{champion.version} {data}{fields}`, then promote this run again")
