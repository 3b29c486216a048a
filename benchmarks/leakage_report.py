"""The leakage of every shipped spec's splits: how much of each eval split its train split already
holds (exact, inside a train text, holding one; pipelines/sources/leakage.py), as the grid measures
it, and how many eval rows `exclude_leaking: true` keeps. Specs whose data is not here are skipped.

    python benchmarks/leakage_report.py                 # every experiments/*.yaml
    python benchmarks/leakage_report.py experiments/sst2_minilm.yaml
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub-only set is reported as not here, without retries

from pipelines.config import load_spec
from pipelines.errors import PlatformError
from pipelines.sources.leakage import measure
from pipelines.tasks import get_task


def rows_for(spec_path: str) -> list[str]:
    spec = load_spec(spec_path)
    task = get_task(spec.task)
    lines = []
    for dataset in spec.datasets:
        try:  # the splits as the grid reads them, before any row is left out
            splits = task.load_splits(dataset.model_copy(update={"exclude_leaking": False}), spec)
        except PlatformError as exc:
            lines.append(f"| {spec.name} | {dataset.name} | not here: {str(exc)[:60]} |||||||")
            continue
        started = time.perf_counter()
        leakage = measure([ex.text for ex in splits.train], [ex.text for ex in splits.eval])
        seconds = time.perf_counter() - started
        s = leakage.shares()
        kept = leakage.eval_rows - len(leakage.leaking)
        lines.append(f"| {spec.name} | {dataset.name}{' (excluded)' if dataset.exclude_leaking else ''} | "
                     f"{len(splits.train):,} / {leakage.eval_rows:,} | {s['exact_share']:.1%} | "
                     f"{s['inside_train_share']:.1%} | {s['contains_train_share']:.1%} | **{s['leak_share']:.1%}** | "
                     f"{kept:,} | {seconds:.2f} |")
    return lines


def main(paths: list[str]) -> None:
    print("| spec | dataset | train / eval rows | exact | inside train | holds train | leaking | clean rows | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in paths or sorted(str(p) for p in Path("experiments").glob("*.yaml")):
        for line in rows_for(path):
            print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
