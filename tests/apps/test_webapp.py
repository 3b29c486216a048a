"""The sentiment web page: its callback on good, empty and huge input, and the real page driven in
Debian's chromium through playwright (no browser download)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from pipelines import compare
from apps.webapp import PLACEHOLDER, classify_fn, describe
from tests.conftest import REPO
from tests.pipelines.test_cell_classification import write_cls_spec
from tests.registry.test_serving import free_port

CHROMIUM = "/usr/bin/chromium"
# As root in a container chromium needs --no-sandbox; the rest keep it off this machine's closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def champion(tracking, tmp_path, tiny_encoder_dir, sentiment_files):
    spec = write_cls_spec(tmp_path, tiny_encoder_dir, sentiment_files, [{"name": "full", "learning_rate": 3e-3}],
                          registry={"model_name": "sentiment-classifier", "metric": "accuracy"})
    assert compare.main([spec]) == 0
    return MlflowClient().get_model_version_by_alias("sentiment-classifier", "champion")


def test_callback_answers_good_empty_and_huge_input(champion):
    classify = classify_fn(mlflow.pyfunc.load_model("models:/sentiment-classifier@champion"))
    result, confidences, latency = classify("the movie was great fun")
    assert result.startswith("positive (") and set(confidences) == {"negative", "positive"} and "ms" in latency
    assert classify("   ") == (PLACEHOLDER, None, "")
    long_result, _, _ = classify("the plot was awful " * 50)  # 200 words > max_seq_len 32 tokens
    assert long_result.startswith("negative (") and "only its beginning was read" in long_result
    huge, confidences, _ = classify("x" * 200_000)
    assert huge.startswith("Cannot classify this input:") and "characters" in huge and confidences is None
    assert describe("models:/sentiment-classifier@champion") == (
        f"sentiment-classifier v{champion.version} (@champion, run {champion.run_id[:8]})")


@pytest.mark.slow
def test_the_page_labels_what_is_typed_in_a_real_browser(champion, tracking):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": tracking}
    proc = subprocess.Popen([sys.executable, "-m", "apps.webapp", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"web app exited: {proc.stdout.read()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "web app did not start within 120 s"
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            expect(page.locator("#model-version")).to_contain_text(f"sentiment-classifier v{champion.version}")
            result = page.locator("#result textarea")
            expect(result).to_have_value(PLACEHOLDER)
            page.locator("#text textarea").press_sequentially("the plot was awful and dull", delay=20)
            expect(result).to_have_value(re.compile(r"^negative \(0\.\d\d\)"), timeout=30_000)
            page.locator("#text textarea").fill("the movie was great fun")
            expect(result).to_have_value(re.compile(r"^positive \(0\.\d\d\)"), timeout=30_000)
            page.locator("#text textarea").fill("")
            expect(result).to_have_value(PLACEHOLDER, timeout=30_000)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
