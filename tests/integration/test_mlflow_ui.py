"""The MLflow UI itself, in Debian's chromium through playwright, after a tiny grid: the link the
grid prints opens the experiment on its training side, with the cells, their ROUGE-L and their
costs in the runs table and the chart view; the registered model shows its @champion. The
screenshots are kept in test-artifacts/mlflow_ui/."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipelines import compare
from pipelines.tracking import LOCAL_UI
from tests.apps.test_webapp import CHROMIUM, CHROMIUM_ARGS, wait_until_up
from tests.conftest import REPO, every_experiment
from tests.pipelines.test_compare import write_spec
from tests.registry.test_serving import free_port

SHOTS = REPO / "test-artifacts" / "mlflow_ui"
COLUMNS = ("rougeL", "eval_loss", "best_rougeL", "train_tokens_per_s", "peak_rss_mb", "saved_mb")


@pytest.fixture
def grid(tracking, tmp_path, tiny_lm_dir, dialogue_files):
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files,
                      train={"max_steps": 3, "batch_size": 4, "log_every": 1, "max_seq_len": 128})
    assert compare.main([spec]) == 0
    runs = MlflowClient().search_runs(every_experiment())
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    cells = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return parent, cells


@pytest.fixture
def mlflow_ui(grid, tracking, tmp_path):
    """`make ui`'s command, on this test's store and a free port."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking, "--workers", "1",
                             "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_link(page, run_name: str):
    """A run's name in the runs table (not the same name in the breadcrumbs or the side bar)."""
    return page.locator("[id^='cell-attributes']").get_by_role("link", name=run_name, exact=True)


def as_the_ui_writes(value: float) -> str:
    """JavaScript's shortest round-trip form of a number, which is Python's but for whole numbers."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _cell_row_text(page, run_name: str) -> str:
    """The whole table row of a run: the grid draws its pinned name column and its other columns
    as two rows that share a row index."""
    index = page.locator(f"[row-index]:has-text('{run_name}')").first.get_attribute("row-index")
    return " ".join(page.locator(f"[row-index='{index}']").all_inner_texts())


@pytest.mark.slow
def test_the_printed_link_shows_the_cells_quality_and_costs_and_the_champion(grid, mlflow_ui):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    parent, cells = grid
    link = parent.data.tags["comparison_view"].replace(LOCAL_UI, mlflow_ui)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1800, "height": 900})
        page.goto(link)
        expect(run_link(page, parent.info.run_name)).to_be_visible(timeout=60_000)
        assert "workflowType=machine_learning" in page.url
        expect(page.get_by_text("Judges")).to_have_count(0)  # not the GenAI side of the UI
        close_assistant = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
        if close_assistant.count():
            close_assistant.click()
        for column in COLUMNS:
            expect(page.locator(f"[role=columnheader][col-id='metrics.`{column}`']")).to_be_visible()
        page.locator("[data-component-id*='runnamecellrenderer']").first.click()  # expand the parent
        for name, run in cells.items():
            expect(run_link(page, name)).to_be_visible()
            row = _cell_row_text(page, name)
            for metric in ("rougeL", "peak_rss_mb"):
                assert as_the_ui_writes(run.data.metrics[metric]) in row.split(), (name, metric, row)
            assert "dlg/eval" in row  # the Dataset column: the data the cell was scored on
        page.screenshot(path=str(SHOTS / "runs_table.png"))

        page.locator("label:has(input[value=CHART])").click()
        expect(page.get_by_text("Quality and cost per cell")).to_be_visible()
        expect(page.get_by_text("(7)")).to_be_visible()  # 6 bar charts and the loss curve, not 48 generated ones
        for chart in ("rougeL", "eval_loss", "train_tokens_per_s", "peak_rss_mb", "saved_mb"):
            expect(page.get_by_text(chart, exact=True).first).to_be_visible()
        page.screenshot(path=str(SHOTS / "chart_view.png"))

        page.goto(f"{mlflow_ui}/#/models/tiny-summarizer")
        expect(page.get_by_text(re.compile(r"^@\s*champion$")).first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Version 1", exact=True)).to_be_visible()
        page.screenshot(path=str(SHOTS / "registered_model.png"))
        browser.close()
