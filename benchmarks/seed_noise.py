"""How far apart a grid's cells are once the seed is counted: the spec's cells (or the `--methods`
named) trained under each of `--seeds`, mean ± std per cell, and which gaps lie within one std
(pipelines/seed_stats.py). Runs in a throwaway MLflow store and registers nothing.

    python benchmarks/seed_noise.py experiments/dialogsum_demo.yaml --methods full,lora --seeds 1,2,3 \\
        --set "train.max_steps=8 eval.max_examples=20"

Writes benchmarks/results/seed_noise_<spec name>.md (ignored by git).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlflow

from pipelines.compare import run
from pipelines.config import load_spec
from pipelines.efficiency import cpu_name
from pipelines.report import to_markdown
from pipelines.spec_paths import parse_overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated training seeds")
    parser.add_argument("--methods", help="comma-separated method names to keep (default: all the spec's)")
    parser.add_argument("--set", default="", help="spec overrides, as for peft_compare")
    args = parser.parse_args(argv)
    overrides = {**parse_overrides(args.set), "seeds": [int(s) for s in args.seeds.split(",")],
                 "registry.promote": False}
    spec = load_spec(args.spec, overrides)
    if args.methods:
        keep = args.methods.split(",")
        spec = spec.model_copy(update={"methods": [m for m in spec.methods if m.name in keep]})
    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        started = time.perf_counter()
        with mlflow.start_run(run_name=f"seed-noise-{spec.name}"):
            _, table, _ = run(spec, args.spec)
        total = time.perf_counter() - started
        summary = mlflow.last_active_run().data.tags["mlflow.note.content"]
    machine = f"machine: {cpu_name()}, {os.cpu_count()} cores; overrides: {args.set or 'none'}; total {total / 60:.1f} min"
    lines = [f"# {spec.name} over seeds {spec.seeds}", "", machine, "", to_markdown(table), "", summary, ""]
    out = Path(__file__).parent / "results" / f"seed_noise_{spec.name}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
