"""What checkpointing costs, and how fast a killed run is back: SmolLM2 on the demo grid's
DialogSum rows, LoRA and full fine-tuning, at the demo's batch.

    python benchmarks/checkpoint_overhead.py                 # 12 steps per arm
    python benchmarks/checkpoint_overhead.py --steps 20

1. Overhead. Each method trains `--steps` steps with a checkpoint after every step, through the
   loop's own `Checkpointer`: the seconds one save takes (atomic write of the trainable weights,
   the optimizer, the RNG states and the rest). At the default interval (a save per
   `train.checkpoint_every_minutes` = 10 minutes of training) the overhead is one save's
   seconds over 600 s; the figure is that ratio, beside the measured seconds per step.
2. Resume. `peft_compare` on the demo spec (one trained cell, `--set` to the method alone) is
   SIGKILLed after its first checkpoint, then started again: the seconds from the restart to the
   "resumed at step" line and to the first new step's log line, against a fresh start's seconds
   to its first step.
Results: benchmarks/results/checkpoint_overhead.json.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from common import REPO, machine, write_result

from pipelines.checkpoint import Checkpointer, Journal
from pipelines.config import load_spec
from pipelines.methods import FullMethod, LoraMethod
from pipelines.runtime import configure_threads
from pipelines.tasks import get_task
from pipelines.train import train

SPEC = REPO / "experiments" / "dialogsum_demo.yaml"
METHODS = {"lora": LoraMethod(r=8, alpha=16, dropout=0.05, learning_rate=1e-3), "full": FullMethod(learning_rate=5e-5)}
DEFAULT_INTERVAL_S = 600.0


def save_cost(method_name: str, steps: int) -> dict:
    spec = load_spec(SPEC, {"train.max_steps": steps, "train.epochs": None, "train.max_minutes": None})
    task, method = get_task(spec.task), METHODS[method_name]
    splits = task.load_splits(spec.datasets[0], spec)
    fitted = task.load(spec.models[0], splits, spec, torch.device("cpu"), {})
    fitted.model = method.apply(fitted.model)
    examples = task.encode(fitted, spec, splits.train)
    timings = {}
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(lambda m, s: None, lambda d, n: None, deferred=True)
        checkpoints = Checkpointer(Path(folder), 0.0, {"method": method_name}, journal)
        started = time.perf_counter()
        result = train(fitted.model, examples, spec.train, collate=task.collate, loss=task.loss,
                       learning_rate=method.learning_rate, weight_decay=0.0, seed=spec.seed,
                       pad_id=fitted.tokenizer.pad_token_id, device=torch.device("cpu"), log=journal.metrics,
                       checkpoints=checkpoints)
        timings["wall_s"] = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(folder).glob("step-*.pt")) / max(1, len(list(Path(folder).glob("step-*.pt"))))
    per_save = checkpoints.save_seconds / max(1, checkpoints.saves)
    step_s = (result.train_time_s - checkpoints.save_seconds) / max(1, result.steps)
    return {"method": method_name, "steps": result.steps, "saves": checkpoints.saves, "seconds_per_save": per_save,
            "checkpoint_mb": size / 2**20, "seconds_per_step_without_saves": step_s,
            "overhead_at_default_interval": per_save / DEFAULT_INTERVAL_S, **timings}


def _until(process: subprocess.Popen, marker: str, started: float) -> float | None:
    for line in process.stdout:
        if marker in line:
            return time.perf_counter() - started
    return None


def resume_time(method_name: str, work: Path) -> dict:
    overrides = ("train.max_steps=40 train.epochs=null train.max_minutes=null train.log_every=1 "
                 f"train.checkpoint_every_minutes=0.05 train.checkpoint_dir={work / 'ckpt'} eval.max_examples=2 "
                 "generation.max_new_tokens=2 registry.promote=false")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"}
    data = yaml.safe_load(SPEC.read_text())
    data["methods"] = [m for m in data["methods"] if m["name"] == method_name]  # one trained cell
    for split in ("train", "eval"):
        data["datasets"][0][split] = str(REPO / data["datasets"][0][split])
    spec = work / "one_method.yaml"
    spec.write_text(yaml.safe_dump(data))
    command = [sys.executable, "-m", "pipelines.compare", str(spec), "--set", overrides]
    started = time.perf_counter()
    fresh = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first_step = _until(fresh, "step 1/", started)
    _until(fresh, "checkpoint step-", started)
    fresh.send_signal(signal.SIGKILL)
    fresh.wait()
    started = time.perf_counter()
    again = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    resumed = _until(again, "resumed at step", started)
    next_step = _until(again, "  step ", started)
    again.send_signal(signal.SIGKILL)
    again.wait()
    return {"method": method_name, "fresh_start_to_first_step_s": first_step, "restart_to_resumed_s": resumed,
            "restart_to_first_new_step_s": next_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    configure_threads()
    result = {"machine": machine(), "overhead": [], "resume": []}
    for name in METHODS:
        result["overhead"].append(save_cost(name, args.steps))
        print(result["overhead"][-1], flush=True)
    for name in METHODS:
        with tempfile.TemporaryDirectory() as work:
            result["resume"].append(resume_time(name, Path(work)))
        print(result["resume"][-1], flush=True)
    write_result("checkpoint_overhead", result)


if __name__ == "__main__":
    main()
