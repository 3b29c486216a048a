"""The training loop on the tiny llama, as `tests/pipelines/test_distributed.py` runs it: in the test's own
process, or under torchrun (`torchrun --nproc_per_node=2 -m tests.pipelines.ddp_worker SCENARIO MODEL OUT`).

Scenarios:
- `losses`: each run of RUNS; the per-step losses and pre-clipping gradient norms, as JSON in OUT;
- `die`, `hang`, `fail`: rank 1 is SIGKILLed, sleeps, or fails in its forward pass at step 3; rank 0 writes
  its error to OUT (`fail` is left to the roll call's unit test: the message is the same).
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from pipelines import distributed
from pipelines.checkpoint import Checkpointer, Journal
from pipelines.config import TrainSettings
from pipelines.methods import FullMethod, LoraMethod
from pipelines.sources.models import load_lm
from pipelines.tasks.summarization import collate, encode_for_training, summary_loss, target_tokens
from pipelines.train import train
from tests.conftest import DIALOGUES

INSTRUCTION = "Summarize the following dialogue in one or two sentences."
RUNS = {  # on the DIALOGUES twice, 16 rows: batches of 5, 5, 5 and 1 (rank 1's share of that one is empty)
    "full, grad_accum 2": (FullMethod(learning_rate=1e-3), {"max_steps": 4, "batch_size": 5, "grad_accum": 2}),
    "lora, odd batches": (LoraMethod(r=4, alpha=8, dropout=0.0, learning_rate=5e-3), {"max_steps": 4, "batch_size": 3}),
}
RESUMED = (LoraMethod(r=4, alpha=8, dropout=0.1, learning_rate=5e-3), {"max_steps": 5, "batch_size": 4, "grad_accum": 2})


class Killed(Exception):
    """Every rank stopping at once at a step, as a killed job does; the next run resumes."""


def run(model_dir: str, method, shape: dict, on_step=None, checkpoints=None, seed: int = 3, loss=summary_loss):
    torch.manual_seed(0)
    model, tokenizer, _ = load_lm(model_dir)
    model = method.apply(model)
    data = [encode_for_training(tokenizer, INSTRUCTION, d, s, 256, 32) for d, s in DIALOGUES * 2]
    norms, losses = [], []
    grads = lambda: math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None))
    hook = register_optimizer_step_pre_hook(lambda *args: norms.append(grads()))

    def log(metrics, step):
        if on_step:
            on_step(step)
        losses.append(metrics["train_loss"])

    settings = TrainSettings(**shape, log_every=1, warmup_ratio=0.2, max_grad_norm=1.0)
    try:
        train(model, data, settings, collate=collate, loss=loss, learning_rate=method.learning_rate,
              weight_decay=0.01, seed=seed, pad_id=tokenizer.pad_token_id, device=torch.device("cpu"), log=log,
              checkpoints=checkpoints, loss_weight=target_tokens)
    finally:
        hook.remove()
    return losses, norms


def losses(model_dir: str, scratch: Path, resume: bool = True) -> dict:
    """Each of RUNS; with `resume`, RESUMED uninterrupted, and again killed at step 3 and resumed."""
    found = {name: run(model_dir, method, shape) for name, (method, shape) in RUNS.items()}
    if not resume:
        return found
    found["resumed: uninterrupted"] = run(model_dir, *RESUMED)[0]
    journal = Journal(lambda metrics, step, timestamp: None, lambda data, name: None, deferred=False)
    checkpoints = lambda: Checkpointer(scratch / "ckpt", 0.0, {"run": "resumed"}, journal,
                                       reads_only=not distributed.is_main())

    def kill(step):
        if step == 3:
            raise Killed

    try:
        run(model_dir, *RESUMED, on_step=kill, checkpoints=checkpoints())
    except Killed:
        pass
    found["resumed: after the kill"] = run(model_dir, *RESUMED, checkpoints=checkpoints())[0]
    return found


def trouble(scenario: str, model_dir: str) -> None:
    """Rank 1 at its third step: killed, asleep, or failing in its forward pass (a CUDA OOM, say)."""
    calls = []

    def loss(model, batch):
        calls.append(1)
        if distributed.rank() == 1 and len(calls) == 5:
            if scenario == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            if scenario == "hang":
                time.sleep(600)
            raise RuntimeError("boom")
        return summary_loss(model, batch)

    run(model_dir, *RUNS["full, grad_accum 2"], loss=loss)


def main(scenario: str, model_dir: str, out: str) -> int:
    with distributed.processes(followers=False):
        try:
            result = losses(model_dir, Path(out).parent) if scenario == "losses" else trouble(scenario, model_dir)
        except distributed.RankFailure as exc:
            result = {"error": str(exc)}
        if distributed.is_main():
            Path(out).write_text(json.dumps(result))
    return 2 if "error" in (result or {}) else 0  # a failed rank exits non-zero: torchrun then stops the others


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
