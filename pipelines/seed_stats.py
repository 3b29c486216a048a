"""A cell trained under several seeds (the spec's `seeds`): one row per cell with the mean and the
sample std of every figure over its finished runs, and which cells lie within noise of the best,
a difference no larger than one std of either cell."""
from __future__ import annotations

import math

import pandas as pd

CELL = ["model", "dataset", "method"]
REFERENCE = "REFERENCE"  # a baseline's row (pipelines/report.py): one value, no seeds
STD = "_std"


def across_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """The per-run table (a `seed` column) as one row per cell: `seeds` finished runs, each numeric
    column their mean and `<column>_std` their std (NaN for one run). A cell with no finished run
    keeps one row with its runs' errors; baselines pass through. Without a `seed` column, `table`."""
    if "seed" not in table:
        return table
    runs = table[table["status"] == "FINISHED"]
    numeric = [c for c in runs.columns if c not in CELL + ["seed", "status", "error"]
               and pd.api.types.is_numeric_dtype(runs[c])]
    grouped = runs.groupby(CELL, sort=False)
    cells = (grouped[numeric].mean().join(grouped[numeric].std(ddof=1).add_suffix(STD))
             .join(grouped.size().rename("seeds")).reset_index())
    cells.insert(len(CELL), "status", "FINISHED")
    others = table[table["status"] != REFERENCE].drop(columns="seed")
    done = set(map(tuple, cells[CELL].values))
    failed = others[[tuple(k) not in done for k in others[CELL].values]]
    if not failed.empty:
        failed = (failed.groupby(CELL, sort=False)
                  .agg(status=("status", "first"), error=("error", lambda e: "; ".join(sorted(set(e)))))
                  .reset_index().assign(seeds=0))
    references = table[table["status"] == REFERENCE].drop(columns="seed")
    return pd.concat([cells, failed, references], ignore_index=True)


def mark_noise(cells: pd.DataFrame, metric: str, *, greater_is_better: bool) -> pd.DataFrame:
    """Add `vs_best` per dataset: "best", "within noise" (the gap to the best mean is no larger than
    the std of either cell) or the signed gap, on `metric`. Only for tables from `across_seeds`."""
    if f"{metric}{STD}" not in cells:
        return cells
    cells = cells.copy()
    cells["vs_best"] = ""
    done = cells[(cells["status"] == "FINISHED") & cells[metric].notna()]
    for _, group in done.groupby("dataset", sort=False):
        best = group[metric].idxmax() if greater_is_better else group[metric].idxmin()
        for index, row in group.iterrows():
            gap = row[metric] - group.at[best, metric]
            noise = max(_std(row, metric), _std(group.loc[best], metric))
            cells.at[index, "vs_best"] = ("best" if index == best else "within noise" if abs(gap) <= noise
                                          else f"{gap:+.3g}")
    return cells


def with_spread(frame: pd.DataFrame) -> pd.DataFrame:
    """For showing: each column that has a `_std` twin as "mean ± std" text, the twins dropped."""
    shown = frame.copy()
    for column in [c for c in frame.columns if f"{c}{STD}" in frame.columns]:
        shown[column] = [_spread(m, s) for m, s in zip(frame[column], frame[f"{column}{STD}"])]
    return shown.drop(columns=[c for c in frame.columns if c.endswith(STD)])


def noise_reading(cells: pd.DataFrame, metric: str, label: str) -> list[str]:
    """Sentences per dataset: the best cell's mean ± std over its seeds, and which cells lie within noise of it."""
    if "vs_best" not in cells:
        return []
    sentences = []
    for dataset, group in cells[cells["vs_best"] != ""].groupby("dataset", sort=False):
        best = group[group["vs_best"] == "best"].iloc[0]
        close = group[group["vs_best"] == "within noise"]
        text = (f"Over {int(best['seeds'])} seeds on {dataset}, {best['model']}/{best['method']} has the best mean "
                f"{label} ({_spread(best[metric], best[f'{metric}{STD}'])}); ")
        text += (", ".join(f"{r['model']}/{r['method']} ({_spread(r[metric], r[f'{metric}{STD}'])})"
                           for _, r in close.iterrows()) + " within noise of it (one std)." if not close.empty
                 else "no other cell is within one std of it.")
        sentences.append(text)
    return sentences


def _std(row, metric: str) -> float:
    value = row[f"{metric}{STD}"]
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _spread(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {std:.2g}"
