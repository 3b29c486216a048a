import math

import pandas as pd
import pytest

from pipelines.report import to_markdown
from pipelines.seed_stats import across_seeds, mark_noise, noise_reading, with_spread


def runs(rows):
    return pd.DataFrame([dict(zip(["model", "dataset", "method", "seed", "status", "rougeL", "error"], r))
                         for r in rows])


TABLE = runs([("m", "d", "lora", 1, "FINISHED", 0.30, ""), ("m", "d", "lora", 2, "FINISHED", 0.34, ""),
              ("m", "d", "full", 1, "FINISHED", 0.33, ""), ("m", "d", "full", 2, "FINISHED", 0.33, ""),
              ("m", "d", "ia3", 1, "FINISHED", 0.20, ""), ("m", "d", "ia3", 2, "FINISHED", 0.22, ""),
              ("m", "d", "bad", 1, "FAILED", float("nan"), "out of memory"),
              ("m", "d", "bad", 2, "FAILED", float("nan"), "out of memory")])


def test_each_cell_becomes_the_mean_and_sample_std_of_its_seeds():
    cells = across_seeds(TABLE).set_index("method")
    assert cells.loc["lora", "rougeL"] == pytest.approx(0.32)
    assert cells.loc["lora", "rougeL_std"] == pytest.approx(math.sqrt(2) * 0.02)  # ddof=1 over 0.30, 0.34
    assert cells.loc["full", "rougeL_std"] == pytest.approx(0.0)
    assert cells.loc["lora", "seeds"] == 2 and cells.loc["lora", "status"] == "FINISHED"
    assert cells.loc["bad", "status"] == "FAILED" and cells.loc["bad", "error"] == "out of memory"
    assert "seed" not in cells.columns


def test_a_table_without_seeds_is_left_as_it_is():
    single = TABLE.drop(columns="seed").drop_duplicates(["method"])
    assert across_seeds(single) is single
    assert "vs_best" not in mark_noise(single, "rougeL", greater_is_better=True)


def test_a_gap_within_one_std_of_either_cell_is_within_noise():
    cells = mark_noise(across_seeds(TABLE), "rougeL", greater_is_better=True).set_index("method")
    # full's 0.33 beats lora's 0.32 by 0.01, less than lora's std of 0.028; ia3 is 0.12 behind
    assert cells.loc["full", "vs_best"] == "best"
    assert cells.loc["lora", "vs_best"] == "within noise"
    assert cells.loc["ia3", "vs_best"] == "-0.12"
    assert cells.loc["bad", "vs_best"] == ""
    lowest = mark_noise(across_seeds(TABLE), "rougeL", greater_is_better=False).set_index("method")
    assert lowest.loc["ia3", "vs_best"] == "best" and lowest.loc["full", "vs_best"] == "+0.12"


def test_the_report_shows_mean_plus_minus_std_and_says_what_is_within_noise():
    cells = mark_noise(across_seeds(TABLE), "rougeL", greater_is_better=True)
    assert list(with_spread(cells).set_index("method")["rougeL"][:2]) == ["0.32 ± 0.028", "0.33 ± 0"]
    markdown = to_markdown(cells)
    assert "0.32 ± 0.028" in markdown and "within noise" in markdown and "rougeL_std" not in markdown
    sentence, = noise_reading(cells, "rougeL", "ROUGE-L")
    assert sentence == ("Over 2 seeds on d, m/full has the best mean ROUGE-L (0.33 ± 0); "
                        "m/lora (0.32 ± 0.028) within noise of it (one std).")
