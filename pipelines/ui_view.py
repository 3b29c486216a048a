"""The grid's comparison as a view of the MLflow UI: the runs table with the task's quality
metric and the costs as columns, and a chart per figure, opened by one link.

It is MLflow's own "shared view" (the experiment tag `mlflow.sharedViewState.<key>` that the UI
writes when a user shares a view, and reads back from `?viewStateShareKey=<key>`): without it a
new user lands on a table whose metric columns are hidden and on 48 generated charts. The state's
fields are the pinned UI's (3.17); a UI that does not know a field ignores it.
"""
from __future__ import annotations

import json

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.errors import first_line

SHARE_KEY = "comparison"
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARE_KEY}"
COSTS = ("train_tokens_per_s", "peak_rss_mb", "saved_mb", "wall_time_s")
SECTION = "adaptlab-comparison"


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def _bar(metric: str) -> dict:
    return {"uuid": f"bar-{metric}", "type": "BAR", "runsCountToCompare": 50, "metricSectionId": SECTION,
            "deleted": False, "isGenerated": False, "displayName": metric, "metricKey": metric}


def _line(metric: str) -> dict:
    return {"uuid": f"line-{metric}", "type": "LINE", "runsCountToCompare": 50, "metricSectionId": SECTION,
            "deleted": False, "isGenerated": False, "displayName": f"{metric} per step", "metricKey": metric,
            "lineSmoothness": 0, "xAxisScaleType": "linear", "scaleType": "linear", "range": {}, "xAxisKey": "step",
            "selectedXAxisMetricKey": "", "yAxisKey": "metric", "yAxisExpressions": [], "ignoreOutliers": False,
            "useGlobalXaxisKey": True, "useGlobalLineSmoothing": True}


def comparison_view(metric: str) -> dict:
    """The UI state: the quality metric, the grid's best of it, eval loss and the costs as columns;
    bar charts of each per cell and the training loss per step."""
    quality = list(dict.fromkeys([metric, "eval_loss"]))
    metrics = quality + [f"best_{metric}"] + list(COSTS)
    return {
        "searchFilter": "", "orderByKey": "attributes.start_time", "orderByAsc": False, "startTime": "ALL",
        "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
        "selectedColumns": [_column("attributes", "Dataset"), *(_column("metrics", m) for m in metrics),
                            _column("attributes", "Models")],
        "compareRunSections": [{"uuid": SECTION, "name": "Quality and cost per cell", "display": True,
                                "isReordered": False, "deleted": False, "isGenerated": False}],
        "compareRunCharts": [*(_bar(m) for m in quality + list(COSTS)), _line("train_loss")],
        "hideEmptyCharts": True,
    }


def share_comparison_view(experiment_id: str, metric: str) -> str | None:
    """Store the view on the experiment; returns its path in the UI, after the server's address,
    or None (said why) where the store refuses the tag: a view is no reason to fail a grid."""
    try:
        MlflowClient().set_experiment_tag(experiment_id, SHARED_VIEW_TAG, json.dumps(comparison_view(metric)))
    except MlflowException as exc:
        print(f"[ui] no comparison view stored on experiment {experiment_id}: {first_line(exc)}", flush=True)
        return None
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={SHARE_KEY}&workflowType=machine_learning"
