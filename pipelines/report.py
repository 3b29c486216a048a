"""The comparison report on the parent run: a table (CSV + markdown) and a chart of quality against cost."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = [
    ("model", "model"), ("dataset", "dataset"), ("method", "method"), ("status", "status"),
    ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"), ("rougeLsum", "ROUGE-Lsum"),
    ("bleu", "BLEU"), ("eval_loss", "eval loss"), ("train_time_s", "train s"), ("wall_time_s", "wall s"),
    ("train_tokens_per_s", "tok/s"), ("peak_rss_mb", "peak RSS MB"), ("peak_vram_mb", "peak VRAM MB"),
    ("params_trainable", "trainable params"), ("saved_mb", "saved MB"), ("error", "error"),
]


def comparison_table(cells) -> pd.DataFrame:
    rows = []
    for cell in cells:
        row = {"model": cell.model, "dataset": cell.dataset, "method": cell.method, "status": cell.status,
               "error": cell.error or ""}
        row.update(cell.metrics)
        rows.append(row)
    frame = pd.DataFrame(rows)
    keep = [key for key, _ in COLUMNS if key in frame.columns]
    frame = frame[keep]
    if not frame["error"].astype(bool).any():
        frame = frame.drop(columns="error")
    return frame


def to_markdown(frame: pd.DataFrame) -> str:
    headers = dict(COLUMNS)
    return frame.rename(columns=headers).to_markdown(index=False, floatfmt=".4g")


def quality_cost_chart(frame: pd.DataFrame, metric: str, path: Path) -> Path | None:
    """One panel per cost (wall time, peak RSS, saved MB), quality on the y axis, a point per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = frame[frame["status"] == "FINISHED"]
    costs = [c for c in ("wall_time_s", "peak_rss_mb", "saved_mb") if c in done.columns]
    if done.empty or metric not in done.columns or not costs:
        return None
    fig, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 4), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        for _, row in done.iterrows():
            ax.scatter(row[cost], row[metric], s=60)
            ax.annotate(f"{row['method']}\n{row['model']}/{row['dataset']}", (row[cost], row[metric]),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(dict(COLUMNS).get(cost, cost))
        ax.set_ylabel(dict(COLUMNS).get(metric, metric))
        ax.grid(alpha=0.3)
    fig.suptitle(f"{dict(COLUMNS).get(metric, metric)} against cost")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
