"""MLflow setup shared by every entry point: where runs go, and how a failure is recorded."""
from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

import mlflow

from pipelines.errors import PlatformError, one_line

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"


def setup_tracking() -> str:
    """Use MLFLOW_TRACKING_URI when set (as `mlflow run` does), else SQLite under ./mlruns."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        Path("mlruns").mkdir(exist_ok=True)
        mlflow.set_tracking_uri(DEFAULT_TRACKING_URI)
    return mlflow.get_tracking_uri()


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
