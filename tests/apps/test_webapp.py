"""The web page: its command line (at least one model; a model that cannot load, or serves
another task than its tab, exits 2 with one line), its tabs and element ids, and the real page
driven in Debian's chromium through playwright (no browser download)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from apps import webapp
from apps.sentiment_tab import PLACEHOLDER
from tests.apps.conftest import GENERATOR_NAME
from tests.apps.test_generation_tab import FakeGenerator
from tests.conftest import REPO
from tests.registry.test_pyfunc import isolated  # noqa: F401  (a fixture)
from tests.registry.test_serving import free_port

CHROMIUM = "/usr/bin/chromium"
# As root in a container chromium needs --no-sandbox; the rest keep it off this machine's closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
GENERATOR_URI = f"models:/{GENERATOR_NAME}@champion"


def test_the_command_line_needs_a_model_and_names_the_one_that_cannot_load(generator_version, capsys, monkeypatch,
                                                                           isolated):  # noqa: F811
    monkeypatch.setenv("ADAPTLAB_THREADS", "1")
    with pytest.raises(SystemExit) as caught:
        webapp.main([])
    assert caught.value.code == 2 and "give at least one model: --sentiment URI, --generator URI" in capsys.readouterr().err
    # Registry look-ups come first: the missing classifier fails before the generator loads.
    assert webapp.main(["--model", "models:/sentiment-classifier@champion", "--generator", GENERATOR_URI]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load 'models:/sentiment-classifier@champion': model ") and "not in the registry" in err
    assert err.count("\n") == 1
    assert webapp.main(["--sentiment", GENERATOR_URI]) == 2  # a text generator in the Sentiment tab
    assert capsys.readouterr().err == (f"error: cannot load '{GENERATOR_URI}': it takes ['prompt'], "
                                       "but the Sentiment tab sends a 'text' column\n")


def test_the_page_has_a_tab_per_model_given_with_stable_element_ids():
    def ids(app) -> dict[str, str]:
        return {c["props"]["elem_id"]: c["type"] for c in app.config["components"] if c["props"].get("elem_id")}

    both = ids(webapp.build_app({"sentiment": (object(), "cls v1"), "generator": (FakeGenerator(), "gpt v2")}))
    assert both == {"tab-sentiment": "tabitem", "model-version": "markdown", "text": "textbox", "result": "textbox",
                    "confidences": "label", "latency": "markdown",
                    "tab-generator": "tabitem", "generator-model-version": "markdown", "prompt": "textbox",
                    "max-new-tokens": "slider", "temperature": "slider", "seed": "number", "generate": "button",
                    "continuation": "textbox", "generation-latency": "markdown"}
    alone = webapp.build_app({"generator": (FakeGenerator(), "gpt v2")})
    assert "tab-sentiment" not in ids(alone) and "prompt" in ids(alone) and alone.title == "Text generation"


def wait_until_up(proc: subprocess.Popen, url: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while True:
        if proc.poll() is not None:
            pytest.fail(f"web app exited: {proc.stdout.read()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            assert time.time() < deadline, f"web app did not start within {seconds:.0f} s"
            time.sleep(0.5)


def check_sentiment_tab(page, expect, champion) -> None:
    expect(page.locator("#model-version")).to_contain_text(f"sentiment-classifier v{champion.version}")
    result = page.locator("#result textarea")
    expect(result).to_have_value(PLACEHOLDER)
    page.locator("#text textarea").press_sequentially("the plot was awful and dull", delay=20)
    expect(result).to_have_value(re.compile(r"^negative \(0\.\d\d\)"), timeout=30_000)
    page.locator("#text textarea").fill("the movie was great fun")
    expect(result).to_have_value(re.compile(r"^positive \(0\.\d\d\)"), timeout=30_000)
    page.locator("#text textarea").fill("")
    expect(result).to_have_value(PLACEHOLDER, timeout=30_000)


def check_generation_tab(page, expect, generator_version) -> None:
    page.get_by_role("tab", name="Text generation").click()
    expect(page.locator("#generator-model-version")).to_contain_text(f"{GENERATOR_NAME} v{generator_version.version}")
    expect(page.locator("#prompt textarea")).to_have_attribute("placeholder", "En un lugar de la Mancha")
    page.locator("#prompt textarea").fill("En un lugar de la Mancha")
    page.locator("#generate").click()
    # The tiny random llama's greedy continuation: 64 new tokens of nonsense, but 64 of them.
    expect(page.locator("#generation-latency")).to_contain_text(re.compile(r"\d+ tokens in \d+ ms \(.* tokens/s\)"),
                                                                timeout=30_000)
    expect(page.locator("#continuation textarea")).not_to_have_value("")


@pytest.mark.slow
def test_both_tabs_answer_in_a_real_browser(champion, generator_version, tracking):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": tracking}
    proc = subprocess.Popen([sys.executable, "-m", "apps.webapp", "--sentiment", "models:/sentiment-classifier@champion",
                             "--generator", GENERATOR_URI, "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(proc, url)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            check_sentiment_tab(page, expect, champion)
            check_generation_tab(page, expect, generator_version)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
