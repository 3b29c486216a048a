"""What the head-to-head benchmarks share: DialogSum rows read through the project's loader,
the project's prompt encoding, the environment, and a JSON result in benchmarks/results/."""
from __future__ import annotations

import json
import os
import platform
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch

from pipelines.sources.datasets import read_rows, validate_rows

INSTRUCTION = "Summarize the following dialogue in one or two sentences."
DIALOGSUM = "../shared/data/dialogsum"  # relative to the repository root, as in experiments/


def dialogsum_rows(path: str, n: int, seed: int = 1234, skip: int = 0):
    """`n` rows of a DialogSum file, a fixed-seed sample (after skipping the first `skip` of it)."""
    examples = validate_rows(read_rows(path), "dialogue", "summary", path)
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    picked = order[skip : skip + n]
    if len(picked) < n:
        raise SystemExit(f"error: {path} has {len(examples)} rows, fewer than the {skip + n} asked for")
    return [examples[i] for i in picked]


def default_data(name: str) -> str:
    return str((REPO / DIALOGSUM / name).resolve())


def machine() -> dict:
    from pipelines.efficiency import cpu_name

    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_name(),
            "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None}


def write_result(name: str, result: dict) -> Path:
    out = REPO / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwrote {out}", flush=True)
    return out
