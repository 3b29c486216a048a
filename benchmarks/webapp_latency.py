"""Time from submit to shown label on the sentiment page, in a real browser (Debian chromium via
playwright), for single sentences; prints p50 / p90 and the model's own predict time for contrast.

    python benchmarks/webapp_latency.py [--model models:/sentiment-classifier@champion] [--rounds 40]

Starts `apps.webapp` on a free port, fills the text box with one sentence at a time (one
`change` event), and measures until the result box shows the new label.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.registry.test_serving import free_port  # noqa: E402
from tests.registry.test_webapp import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SENTENCES = [
    "a warm , funny and beautifully acted film", "the plot is a mess and the jokes fall flat",
    "one of the best films of the year", "dull , lifeless and far too long", "a gorgeous , moving story",
    "i wanted my two hours back", "smart writing and a terrific cast", "an embarrassing waste of talent",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/sentiment-classifier@champion")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlruns' / 'mlflow.db'}")
    proc = subprocess.Popen([sys.executable, "-m", "apps.webapp", "--model", args.model, "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit("error: the web app did not start")
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            box, result = page.locator("#text textarea"), page.locator("#result textarea")
            latencies = []
            for i in range(args.rounds + 3):  # the first rounds warm the page and the model up
                sentence = SENTENCES[i % len(SENTENCES)] + f" #{i}"
                before = result.input_value()
                started = time.perf_counter()
                box.fill(sentence)
                page.wait_for_function("([el, old]) => el.value !== old && !el.value.startsWith('Type')",
                                       arg=[result.element_handle(), before], timeout=30_000)
                if i >= 3:
                    latencies.append(1000 * (time.perf_counter() - started))
                box.fill("")
                page.wait_for_function("el => el.value.startsWith('Type')", arg=result.element_handle())
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"submit -> shown label over {len(latencies)} sentences: p50 {statistics.median(latencies):.0f} ms, "
          f"p90 {percentile(latencies, 0.9):.0f} ms, min {min(latencies):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
