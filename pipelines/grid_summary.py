"""What the parent run of a grid shows by itself in the MLflow UI: the best value of each quality
metric with the cell that holds it (so the chart view of a collapsed parent is not empty), and the
comparison table as an MLflow table, which the UI renders as a table rather than a file."""
from __future__ import annotations

import math

import mlflow
import pandas as pd

from pipelines.report import SCORES

TABLE_FILE = "report/comparison.json"


def best_per_metric(table: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """{metric: (best value, "model/method/dataset")} over the finished cells, each metric in the
    direction its task gives it; baselines and failed cells hold no best."""
    done = table[table["status"] == "FINISHED"] if "status" in table else table.iloc[0:0]
    best = {}
    for name, score in SCORES.items():
        if name not in done or done[name].isna().all():
            continue
        row = done.loc[done[name].idxmax() if score.greater_is_better else done[name].idxmin()]
        best[name] = (float(row[name]), f"{row['model']}/{row['method']}/{row['dataset']}")
    return best


def log_grid_summary(table: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """Log on the active (parent) run `best_<metric>` metrics, `best_<metric>.cell` tags and the
    table; returns what `best_per_metric` found."""
    best = best_per_metric(table)
    finite = {f"best_{name}": value for name, (value, _) in best.items() if math.isfinite(value)}
    if finite:
        mlflow.log_metrics(finite)
        mlflow.set_tags({f"best_{name}.cell": cell for name, (_, cell) in best.items()})
    # MLflow's table artifacts want JSON-safe columns: NaN (a metric a cell lacks) becomes null.
    mlflow.log_table(table.astype(object).where(table.notna(), None), artifact_file=TABLE_FILE)
    return best
