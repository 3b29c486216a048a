"""The comparison report on the parent run: a table (CSV + markdown) and a chart of quality against cost."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.seed_stats import REFERENCE, noise_reading, with_spread
from pipelines.tasks import TASKS

KEYS = ["model", "dataset", "method", "seed", "seeds", "status"]  # seed: a run of a cell; seeds: runs averaged
# Every task's scores, in their order, each once (eval_loss last): names, labels, points and
# directions are the tasks' (pipelines/tasks), not lists of the report's own.
SCORES = {score.name: score for task in TASKS.values() for score in task.scores if score.name != "eval_loss"}
SCORES["eval_loss"] = next(s for task in TASKS.values() for s in task.scores if s.name == "eval_loss")
FIT = [("overfitting_ratio", "eval/train loss"), ("generalisation_gap", "eval - train loss")]
TOKENIZER_COLUMNS = [("tokens_per_example", "tokens/example"), ("unknown_token_share", "unknown tokens"),
                     ("split_word_share", "split words")]
COST = [("train_time_s", "train s"), ("wall_time_s", "wall s"), ("train_tokens_per_s", "tok/s"),
        ("train_examples_per_s", "examples/s"), ("mfu", "MFU"), ("generation_ms_per_token", "gen ms/token"),
        ("peak_rss_mb", "peak RSS MB"), ("peak_vram_mb", "peak VRAM MB"), ("params_trainable", "trainable params"),
        ("saved_mb", "saved MB")]
COLUMNS = ([(k, k) for k in KEYS] + [(s.name, s.label) for s in SCORES.values()] + [("vs_best", "vs best")] + FIT
           + TOKENIZER_COLUMNS + COST + [("error", "error")])


def reference_rows(references: dict[str, dict[str, dict[str, float]]]) -> list[dict]:
    """Rows for the task's baselines per dataset ({dataset: {name: {score: value}}})."""
    return [{"model": "baseline", "dataset": dataset, "method": name, "status": REFERENCE, **scores}
            for dataset, figures in references.items() for name, scores in figures.items()]


def comparison_table(cells, references: list[dict] = ()) -> pd.DataFrame:
    rows = []
    for cell in cells:
        row = {"model": cell.model, "dataset": cell.dataset, "method": cell.method, "status": cell.status,
               "error": cell.error or "", **({"seed": cell.seed} if cell.seed is not None else {})}
        row.update(cell.metrics)
        rows.append(row)
    rows += [{**row, "error": ""} for row in references]
    frame = pd.DataFrame(rows)
    keep = [key for key, _ in COLUMNS if key in frame.columns]
    frame = frame[keep]
    if not frame["error"].astype(bool).any():
        frame = frame.drop(columns="error")
    return frame


# "N points over the base": a score on 0..1 reads as percentage points, sacrebleu's BLEU and
# n-gram precisions are on 0..100 already; a figure in its own units (a loss) has no points.
POINTS_PER_UNIT = {name: score.points for name, score in SCORES.items() if score.points}
QUALITY = list(SCORES) + ["vs_best"] + [key for key, _ in FIT]
TOKENIZER = [key for key, _ in TOKENIZER_COLUMNS] + ["accuracy"]


def to_markdown(frame: pd.DataFrame) -> str:
    """Two tables, as in the study: quality, then cost (time, memory, speed, size), plus failures.
    A figure averaged over seeds shows as mean ± std."""
    headers = dict(COLUMNS)
    frame = with_spread(frame)

    def table(columns, rows=frame):
        keep = [c for c in KEYS + columns if c in rows.columns]
        return rows[keep].rename(columns=headers).to_markdown(index=False, floatfmt=".4g")

    cost = [key for key, _ in COLUMNS if key not in KEYS + QUALITY + TOKENIZER + ["error"]]
    cells = frame[frame["status"] != REFERENCE]
    parts = ["### Quality", table(QUALITY), "", "### Cost", table(cost, cells)]
    if "tokens_per_example" in frame.columns:
        parts += ["", "### Tokenizers (train split) against accuracy", table(TOKENIZER, cells)]
    if "error" in frame.columns:
        parts += ["", "### Failed cells", table(["error"], cells[cells["status"] != "FINISHED"])]
    return "\n".join(parts)


def reading(frame: pd.DataFrame, metric: str, *, greater_is_better: bool) -> str:
    """A plain-language paragraph: which method wins where, and at what cost. `greater_is_better`
    is the metric's direction (the spec's `registry.greater_is_better`): a loss wins by its minimum."""
    label = dict(COLUMNS).get(metric, metric)
    sentences = []
    done = frame[frame["status"] == "FINISHED"] if "status" in frame else frame
    for (model, dataset), group in done.groupby(["model", "dataset"], sort=False):
        if metric not in group or group[metric].isna().all():
            continue
        best = group.loc[group[metric].idxmax() if greater_is_better else group[metric].idxmin()]
        text = f"On {dataset} with {model}, {best['method']} scores the best {label} ({best[metric]:.3f}"
        base = group[group["method"] == "base"]
        base_value = base[metric].iloc[0] if not base.empty else float("nan")
        if best["method"] != "base" and pd.notna(base_value):
            text += f", {_margin(best[metric] - base_value, metric, greater_is_better)} the zero-shot base"
        sentences.append(text + ").")
        full = group[group["method"] == "full"]
        for _, row in group[~group["method"].isin(["base", "full"])].iterrows():
            if full.empty or not full["saved_mb"].iloc[0]:
                continue
            ref = full.iloc[0]
            parts = [_against_full(row, ref, metric, label, greater_is_better),
                     f"saving {row['saved_mb']:.1f} MB instead of {ref['saved_mb']:.0f} MB"]
            if "peak_rss_mb" in row and ref.get("peak_rss_mb"):
                parts.append(f"at {row['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x its peak RAM")
            if row.get("train_tokens_per_s") and ref.get("train_tokens_per_s"):
                parts.append(f"{row['train_tokens_per_s'] / ref['train_tokens_per_s']:.2f}x its training speed")
            sentences.append(", ".join(parts) + ".")
    sentences += noise_reading(frame, metric, label)
    sentences += _against_references(frame)
    failed = frame[~frame["status"].isin(["FINISHED", REFERENCE])] if "status" in frame else frame.iloc[0:0]
    for _, row in failed.iterrows():
        sentences.append(f"{row['method']} on {row['model']}/{row['dataset']} failed: {row.get('error', '')}.")
    return " ".join(sentences) if sentences else "No cell finished, so there is nothing to compare."


def _against_references(frame: pd.DataFrame, score: str = "bits_per_char") -> list[str]:
    """Per dataset with baselines: the best cell's bits per character against the best baseline."""
    if "status" not in frame or score not in frame:
        return []
    sentences = []
    for dataset, group in frame.groupby("dataset", sort=False):
        refs, done = group[group["status"] == REFERENCE], group[group["status"] == "FINISHED"]
        if refs.empty or done[score].isna().all():
            continue
        best, ref = done.loc[done[score].idxmin()], refs.loc[refs[score].idxmin()]
        verdict = "beats" if best[score] < ref[score] else "misses"
        sentences.append(f"On {dataset}, {best['model']}/{best['method']} ({best[score]:.3f} bits/char) {verdict} "
                         f"the best baseline, {ref['method']} ({ref[score]:.3f}), by {abs(ref[score] - best[score]):.3f} "
                         "bits/char.")
    return sentences


def _margin(difference: float, metric: str, greater_is_better: bool) -> str:
    """The best cell's lead over the base, as a gain: "+20.0 points over", "0.812 lower than"."""
    scale = POINTS_PER_UNIT.get(metric)
    if greater_is_better:
        return f"{scale * difference:+.1f} points over" if scale else f"{difference:+.3g} over"
    return f"{-scale * difference:.1f} points lower than" if scale else f"{-difference:.3g} lower than"


def _against_full(row, ref, metric: str, label: str, greater_is_better: bool) -> str:
    """A method's score next to full fine-tuning's: a share of a score, a ratio of a loss (where
    "95% of" would read as falling short although lower is better)."""
    if greater_is_better:
        share = 100 * row[metric] / ref[metric] if ref[metric] else float("nan")
        return f"{row['method']} reaches {share:.0f}% of full fine-tuning's {label}"
    ratio = row[metric] / ref[metric] if ref[metric] else float("nan")
    return f"{row['method']}'s {label} is {ratio:.2f}x full fine-tuning's (lower is better)"


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
            spread = row.get(f"{metric}_std")  # over the cell's seeds, when it has several
            if spread is not None and pd.notna(spread):
                ax.errorbar(row[cost], row[metric], yerr=spread, fmt="none", ecolor="grey", capsize=3)
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
