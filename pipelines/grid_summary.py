"""What the parent run of a grid shows by itself in the MLflow UI: the best value of each quality
metric with the cell that holds it (so the chart view of a collapsed parent is not empty), and the
comparison table as an MLflow table, which the UI renders as a table rather than a file."""
from __future__ import annotations

import math

import mlflow
import pandas as pd

from pipelines.report import SCORES

TABLE_FILE = "report/comparison.json"


def best_rows(table: pd.DataFrame) -> dict[str, pd.Series]:
    """{metric: the finished cell's row with its best value}, each metric in the direction its task
    gives it (a mean, for cells run under several seeds); baselines and failed cells hold no best."""
    done = table[table["status"] == "FINISHED"] if "status" in table else table.iloc[0:0]
    return {name: done.loc[done[name].idxmax() if score.greater_is_better else done[name].idxmin()]
            for name, score in SCORES.items() if name in done and not done[name].isna().all()}


def best_per_metric(table: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """{metric: (best value, "model/method/dataset")}, as `best_rows` finds them."""
    return {name: (float(row[name]), _cell_of(row)) for name, row in best_rows(table).items()}


def log_grid_summary(table: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """Log on the active (parent) run `best_<metric>` metrics (and `best_<metric>_std` over seeds),
    `best_<metric>.cell` tags and the table; returns {metric: (best value, cell)}."""
    rows = best_rows(table)
    figures = {f"best_{name}": row[name] for name, row in rows.items()}
    figures.update({f"best_{name}_std": row[f"{name}_std"] for name, row in rows.items() if f"{name}_std" in row})
    finite = {key: float(value) for key, value in figures.items() if pd.notna(value) and math.isfinite(value)}
    if finite:
        mlflow.log_metrics(finite)
        mlflow.set_tags({f"best_{name}.cell": _cell_of(row) for name, row in rows.items()})
    # MLflow's table artifacts want JSON-safe columns: NaN (a metric a cell lacks) becomes null.
    mlflow.log_table(table.astype(object).where(table.notna(), None), artifact_file=TABLE_FILE)
    return {name: (float(row[name]), _cell_of(row)) for name, row in rows.items()}


def _cell_of(row: pd.Series) -> str:
    return f"{row['model']}/{row['method']}/{row['dataset']}"
