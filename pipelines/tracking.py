"""MLflow setup shared by every entry point: where runs go, and how a failure is recorded."""
from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.errors import PlatformError, one_line
from pipelines.tracking_server import check_server, shown

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
# The tag MLflow 3's UI reads to open an experiment on its model-training pages rather than the
# GenAI overview. The pinned UI (3.17) lets its own workflow switch (`?workflowType=`) override it,
# so links we print carry that too (`ui_link`).
EXPERIMENT_KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
LOCAL_UI = "http://127.0.0.1:5000"  # `make ui`


def setup_tracking() -> str:
    """Use MLFLOW_TRACKING_URI when set (as `mlflow run` does), else SQLite under ./mlruns."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        Path("mlruns").mkdir(exist_ok=True)
        mlflow.set_tracking_uri(DEFAULT_TRACKING_URI)
    uri = mlflow.get_tracking_uri()
    try:
        check_server(uri)
    except PlatformError as exc:  # no run can be opened to record it: say it and stop
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    return uri


def use_experiment(name: str) -> str:
    """Send this process's runs to the experiment named `name` (a spec's), created if missing;
    returns its id. An experiment chosen from outside wins: `mlflow run --experiment-name` (the
    run exists already), or MLFLOW_EXPERIMENT_NAME / MLFLOW_EXPERIMENT_ID. A deleted experiment
    is a one-line error (exit 2): no run can be opened to record it."""
    try:
        experiment_id = _chosen_experiment(MlflowClient(), name)
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    outside = os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_experiment(experiment_id=experiment_id)
    if outside is None:  # set_experiment exports its choice, which a later call would take for one made outside
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    return experiment_id


def _chosen_experiment(client: MlflowClient, name: str) -> str:
    if run_id := os.environ.get("MLFLOW_RUN_ID"):
        experiment_id = client.get_run(run_id).info.experiment_id
    elif chosen := os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        experiment_id = _existing_or_created(client, chosen)
    else:
        experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or _existing_or_created(client, name)
    experiment = client.get_experiment(experiment_id)
    if experiment.lifecycle_stage == "deleted":
        raise PlatformError(f"experiment '{experiment.name}' was deleted: restore it with `mlflow experiments "
                            f"restore --experiment-id {experiment_id}`, or remove it for good with `mlflow gc`")
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    return experiment_id


def _existing_or_created(client: MlflowClient, name: str) -> str:
    if found := client.get_experiment_by_name(name):
        return found.experiment_id
    try:
        return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
    except MlflowException as exc:
        # Two workers that start at once both find no experiment; the second to create it loses.
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def ui_link(fragment: str, tracking_uri: str | None = None) -> str:
    """The full address of a page of the MLflow UI (`fragment`: "#/experiments/1/runs?..."): on
    an http tracking server, that server; on a local store, the UI that `make ui` serves."""
    uri = (tracking_uri or mlflow.get_tracking_uri()).rstrip("/")
    base = shown(uri) if uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base}/{fragment}"


def _end_nested_runs(parent, status: str) -> None:
    while mlflow.active_run() and mlflow.active_run().info.run_id != parent.info.run_id:
        mlflow.end_run(status)  # a child run left open by the failure


@contextmanager
def failing_run_on_error(run_name: str):
    """Open (or, under `mlflow run`, attach to) the parent run. Any error marks it FAILED with the
    reason as the `error` tag and exits with a one-line message: 2 for bad input, 1 otherwise."""
    run = mlflow.start_run(run_name=run_name)
    try:
        yield run
    except KeyboardInterrupt:
        _end_nested_runs(run, "KILLED")
        mlflow.set_tag("error", "interrupted")
        mlflow.end_run("KILLED")
        raise
    except Exception as exc:
        reason = one_line(exc)
        if not isinstance(exc, PlatformError):
            traceback.print_exc()
        _end_nested_runs(run, "FAILED")
        mlflow.set_tag("error", reason)
        mlflow.end_run("FAILED")
        print(f"error: {reason}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(exc, PlatformError) else 1)
    else:
        mlflow.end_run("FINISHED")


def paged_runs(client, experiment_ids: list[str], filter_string: str, order_by: list[str] | None = None,
               page_size: int = 500):
    """Every run matching `filter_string`, filtered by the store and fetched a page at a time, so a
    tracking server with many thousands of runs sends only the ones asked for."""
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, order_by=order_by,
                                  max_results=page_size, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def quoted(value: str) -> str:
    """A string literal for an MLflow search filter, whose grammar has no escapes: single quotes,
    or double quotes around a value that holds a single one."""
    if "'" not in value:
        return f"'{value}'"
    if '"' in value:
        raise ValueError(f"an MLflow filter cannot hold a value with both kinds of quote: {value!r}")
    return f'"{value}"'
