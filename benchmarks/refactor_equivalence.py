"""Do two commits train and score the same? Runs step-capped copies of specs (no wall-clock cap)
on each commit, on this machine with the same seeds and threads, and compares every cell's
quality and count metrics (timings, memory and MFU are left out: they are measurements, not
results).

    python benchmarks/refactor_equivalence.py --before <rev> [--after HEAD]

Each commit is unpacked with `git archive` beside a link to ../shared and to this venv, and runs
`python -m pipelines.compare <spec> --set ...` with a tracking store of its own.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPECS = {  # spec -> overrides that cap it by steps and keep it to minutes
    "experiments/dialogsum_demo.yaml": "train.max_steps=4 train.max_minutes=null train.epochs=null "
                                       "eval.max_examples=12 generation.max_new_tokens=24",
    "experiments/sst2_minilm.yaml": "train.max_steps=40 train.max_minutes=null train.epochs=null "
                                    "train.eval_every_steps=20 train.eval_subset=200 datasets.0.max_train_rows=4000 "
                                    "datasets.0.max_eval_rows=1000",
}
MEASURED = ("time", "_per_s", "rss", "vram", "mfu", "flops", "system/")


def run_commit(rev: str, root: Path) -> dict[str, dict[str, float]]:
    tree = root / rev.replace("/", "_") / "repo"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    (tree / ".venv").symlink_to(REPO / ".venv")
    (tree.parent / "shared").symlink_to(REPO.parent / "shared")
    store = f"sqlite:///{tree.parent / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "HF_HUB_OFFLINE": "1", "ADAPTLAB_THREADS": "2"}
    for spec, words in SPECS.items():
        print(f"[{rev}] {spec}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "pipelines.compare", spec, "--set", words], cwd=tree, env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{rev} {spec} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    import mlflow

    client = mlflow.MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    cells = {}
    for run in runs:
        if "mlflow.parentRunId" in run.data.tags:
            key = f"{run.data.params.get('name')}:{run.info.run_name}"
            cells[key] = {k: v for k, v in run.data.metrics.items() if not any(m in k for m in MEASURED)}
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="equivalence-") as tmp:
        before, after = run_commit(args.before, Path(tmp)), run_commit(args.after, Path(tmp))
    rows, differing = [], 0
    for cell in sorted(set(before) | set(after)):
        old, new = before.get(cell, {}), after.get(cell, {})
        for name in sorted(set(old) | set(new)):
            a, b = old.get(name), new.get(name)
            if a != b:
                differing += 1
                rows.append(f"| {cell} | {name} | {a} | {b} |")
    shared = sum(len(set(before.get(c, {})) & set(after.get(c, {}))) for c in set(before) & set(after))
    print(f"\n{len(before)} cells before, {len(after)} after; {shared} metrics compared; {differing} differ"
          + (" (added or removed metrics included)" if differing else ""))
    if rows:
        print("| cell | metric | before | after |\n|---|---|---|---|\n" + "\n".join(rows))
    out = REPO / "benchmarks" / "results" / "refactor_equivalence.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"before": before, "after": after}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
