import pandas as pd
import pytest

from pipelines.cell import CellResult
from pipelines.report import COLUMNS, comparison_table, quality_cost_chart, reading, to_markdown


def cells():
    common = {"peak_rss_mb": 2000.0, "train_tokens_per_s": 200.0}
    return [
        CellResult("smol", "demo", "base", "FINISHED", "r1", {"rougeL": 0.20, "saved_mb": 0.0, "peak_rss_mb": 1500.0}),
        CellResult("smol", "demo", "full", "FINISHED", "r2", {"rougeL": 0.40, "saved_mb": 500.0, **common}),
        CellResult("smol", "demo", "lora", "FINISHED", "r3",
                   {"rougeL": 0.38, "saved_mb": 10.0, "peak_rss_mb": 1000.0, "train_tokens_per_s": 300.0}),
        CellResult("smol", "demo", "qlora", "FAILED", "r4", error="qlora cannot apply to X: boom"),
    ]


def test_table_keeps_failed_cells_with_their_reason():
    table = comparison_table(cells())
    assert list(table["method"]) == ["base", "full", "lora", "qlora"]
    assert table.loc[3, "error"] == "qlora cannot apply to X: boom"
    markdown = to_markdown(table)
    assert "### Quality" in markdown and "### Cost" in markdown and "ROUGE-L" in markdown
    failures = markdown.split("### Failed cells")[1]
    assert "qlora cannot apply to X: boom" in failures and "| lora " not in failures


def test_reading_says_who_wins_and_at_what_cost():
    text = reading(comparison_table(cells()), "rougeL", greater_is_better=True)
    assert "On demo with smol, full scores the best ROUGE-L (0.400, +20.0 points over the zero-shot base)." in text
    assert ("lora reaches 95% of full fine-tuning's ROUGE-L, saving 10.0 MB instead of 500 MB, "
            "at 0.50x its peak RAM, 1.50x its training speed.") in text
    assert "qlora on smol/demo failed: qlora cannot apply to X: boom." in text


def test_reading_takes_a_loss_at_its_minimum():
    losses = {"base": 2.0, "full": 1.2, "lora": 1.5}
    rows = [CellResult("smol", "demo", method, "FINISHED", f"r{i}",
                       {"eval_loss": loss, "saved_mb": 500.0 if method == "full" else 10.0})
            for i, (method, loss) in enumerate(losses.items())]
    text = reading(comparison_table(rows), "eval_loss", greater_is_better=False)
    assert "On demo with smol, full scores the best eval loss (1.200, 0.8 lower than the zero-shot base)." in text
    assert "lora's eval loss is 1.25x full fine-tuning's (lower is better), saving 10.0 MB instead of 500 MB" in text


@pytest.mark.parametrize(("metric", "scores", "greater", "margin"), [
    ("bleu", (10.0, 25.0), True, "+15.0 points over"),  # sacrebleu: 0..100 already
    ("accuracy", (0.50, 0.75), True, "+25.0 points over"),
    ("ece", (0.10, 0.05), False, "5.0 points lower than"),
    ("eval_loss", (2.0, 1.5), False, "0.5 lower than"),  # no points: its own units
])
def test_points_follow_the_metrics_scale(metric, scores, greater, margin):
    rows = [CellResult("smol", "demo", method, "FINISHED", method, {metric: score, "saved_mb": 0.0})
            for method, score in zip(("base", "full"), scores)]
    label = dict(COLUMNS)[metric]
    expected = f"full scores the best {label} ({scores[1]:.3f}, {margin} the zero-shot base)."
    assert expected in reading(comparison_table(rows), metric, greater_is_better=greater)


def test_chart_is_written_for_finished_cells(tmp_path):
    path = quality_cost_chart(comparison_table(cells()), "rougeL", tmp_path / "chart.png")
    assert path.stat().st_size > 1000
    assert quality_cost_chart(pd.DataFrame({"status": ["FAILED"], "method": ["x"]}), "rougeL", tmp_path / "no.png") is None
