"""One training run: AdamW, warmup + cosine schedule, length-grouped batches, step and time budgets.

A plain loop rather than HF Trainer: the budget includes a wall-clock cap, the loss masking is
done in `tasks`, and the hot loop must stay free of per-step host syncs (loss is read back only
when logged). Trainer measured no faster here and would hide those choices.

The loop knows no task: it is given the task's `collate(examples, pad_id) -> batch` and
`loss(model, batch) -> scalar`, and which way the selection metric is better.
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import torch

from pipelines.batches import length_grouped_batches
from pipelines.checkpoint import Checkpointer, loop_state, restore_loop
from pipelines.data_parallel import OneProcess, data_parallel
from pipelines.efficiency import mfu

Batch = dict[str, torch.Tensor]


@dataclass
class TrainResult:
    steps: int
    examples: int
    tokens: int
    train_time_s: float  # excludes validation during training
    tokens_per_s: float
    final_loss: float
    stopped_by: str  # "steps", "epochs", "time" or "early_stopping"
    padding_share: float = 0.0  # share of the batches' token slots that held padding
    best_step: int | None = None  # the step whose weights were kept, when validating during training
    best_value: float | None = None


class BestCheckpoint:
    """Tracks the validation metric, keeps a copy of the trainable weights at its best, and says
    when `patience` validations in a row brought no improvement. Only trainable tensors are
    copied: frozen base weights cannot change, so a PEFT snapshot costs the adapter's size."""

    def __init__(self, params: list[torch.Tensor], greater_is_better: bool, patience: int | None):
        self.params, self.greater, self.patience = params, greater_is_better, patience
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.snapshot: list[torch.Tensor] | None = None
        self.since_best = 0

    def update(self, value: float, step: int) -> bool:
        """Record a validation; returns True when training should stop early."""
        improved = self.best_value is None or (value > self.best_value if self.greater else value < self.best_value)
        if improved:
            self.best_value, self.best_step, self.since_best = value, step, 0
            self.snapshot = [p.detach().clone() for p in self.params]
            return False
        self.since_best += 1
        return self.patience is not None and self.since_best >= self.patience

    def state(self) -> dict:
        return {"best_value": self.best_value, "best_step": self.best_step, "since_best": self.since_best,
                "snapshot": self.snapshot}

    def load_state(self, state: dict) -> None:
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.since_best, self.snapshot = state["since_best"], state["snapshot"]

    @torch.no_grad()
    def restore(self) -> None:
        if self.snapshot is not None:
            for param, saved in zip(self.params, self.snapshot):
                param.copy_(saved)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup to `peak`, then cosine decay to 10% of it; a function of the step alone."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def plan_steps(n_examples: int, settings) -> tuple[int, str]:
    """Optimizer steps to run and which budget sets them: `epochs`, `max_steps`, or the smaller of both."""
    if settings.epochs is None and settings.max_steps is not None:
        return settings.max_steps, "steps"
    batches_per_epoch = math.ceil(n_examples / settings.batch_size)
    by_epochs = max(1, math.ceil((settings.epochs or 1.0) * batches_per_epoch / settings.grad_accum))
    if settings.max_steps is not None and settings.max_steps < by_epochs:
        return settings.max_steps, "steps"
    return by_epochs, "epochs"


@dataclass
class _Meter:
    """What a run counts: tokens, examples and padded slots over the run, and the loss and tokens of
    the current log window (the loss stays on the device until the window is logged)."""

    started: float
    window_loss: torch.Tensor
    tokens: int = 0
    examples: int = 0
    slots: int = 0
    window_tokens: int = 0
    window_steps: int = 0
    last_loss: float = float("nan")

    def __post_init__(self):
        self.window_start = self.started

    def log_window(self, done: int, total: int, lr: float, log, flops_per_token, peak_flops) -> None:
        now = time.perf_counter()
        self.last_loss = self.window_loss.item() / self.window_steps  # the only host sync, once per log window
        rate = self.window_tokens / max(now - self.window_start, 1e-9)
        metrics = {"train_loss": self.last_loss, "learning_rate": lr, "train_tokens_per_s": rate}
        shown = ""
        if flops_per_token and peak_flops:
            metrics["model_flops_per_s"] = rate * flops_per_token
            metrics["mfu"] = mfu(rate, flops_per_token, peak_flops)
            shown = f"  {metrics['model_flops_per_s'] / 1e9:.0f} GFLOP/s  mfu {100 * metrics['mfu']:.0f}%"
        log(metrics, done)
        print(f"  step {done}/{total}  loss {self.last_loss:.4f}  lr {lr:.2e}  {rate:.0f} tok/s{shown}  "
              f"{now - self.started:.0f}s", flush=True)
        self.window_loss.zero_()
        self.window_tokens, self.window_steps, self.window_start = 0, 0, now

    def result(self, steps: int, elapsed: float, stopped_by: str, best: BestCheckpoint) -> TrainResult:
        return TrainResult(
            steps=steps, examples=self.examples, tokens=self.tokens, train_time_s=elapsed,
            tokens_per_s=self.tokens / max(elapsed, 1e-9), final_loss=self.last_loss, stopped_by=stopped_by,
            best_step=best.best_step, best_value=best.best_value, padding_share=1 - self.tokens / max(self.slots, 1),
        )

    def state(self) -> dict:
        now = time.perf_counter()
        return {"tokens": self.tokens, "examples": self.examples, "slots": self.slots,
                "window_loss": self.window_loss.detach().cpu(), "window_tokens": self.window_tokens,
                "window_steps": self.window_steps, "last_loss": self.last_loss,
                "train_seconds": now - self.started, "window_seconds": now - self.window_start}

    def load_state(self, state: dict) -> None:
        """Counters as saved; the clock set back by the training time already spent."""
        now = time.perf_counter()
        self.tokens, self.examples, self.slots = state["tokens"], state["examples"], state["slots"]
        self.window_loss.copy_(state["window_loss"])
        self.window_tokens, self.window_steps, self.last_loss = (state["window_tokens"], state["window_steps"],
                                                                 state["last_loss"])
        self.started, self.window_start = now - state["train_seconds"], now - state["window_seconds"]

    def pause(self, seconds: float) -> None:
        """Time spent validating counts neither as training time nor in the log window's rate."""
        self.started += seconds
        self.window_start += seconds


def _batch_stream(lengths: list[int], batch_size: int, seed: int, skip: int = 0):
    """Batches of example indices, epoch after epoch, each epoch in its own seeded order; the
    first `skip` batches left out (where a resumed run picks up)."""
    epochs = (length_grouped_batches(lengths, batch_size, seed + epoch) for epoch in itertools.count())
    return itertools.islice(itertools.chain.from_iterable(epochs), skip, None)


def _accumulate(ranks: OneProcess, examples, lengths, stream, settings, collate, loss, pad_id, device, autocast, meter):
    """One optimizer step's micro-batches: forward, backward, gradients summed in `.grad` (under
    torchrun, each rank takes its share of every micro-batch and DDP sums over the ranks)."""
    for micro in range(settings.grad_accum):
        idx = next(stream)
        mine = [examples[i] for i in ranks.share(idx)]
        batch = {k: v.to(device, non_blocking=True) for k, v in collate(mine, pad_id).items()}
        with ranks.syncing(last=micro == settings.grad_accum - 1):
            with autocast:
                micro_loss = ranks.loss(loss, batch) / settings.grad_accum
            ranks.backward(micro_loss)
        meter.window_loss += ranks.total(micro_loss)
        n_tokens = sum(lengths[i] for i in idx)
        meter.tokens += n_tokens
        meter.slots += ranks.slots(idx)
        meter.window_tokens += n_tokens
        meter.examples += len(idx)


def _validate(model, done: int, settings, validate, on_validation, best: BestCheckpoint, log) -> bool:
    """Score the model, keep its weights if they are the best so far; returns whether to stop early."""
    scores = validate(model, done)
    model.train()
    log({f"val_{k}": v for k, v in scores.items()}, done)
    metric = settings.select_metric or next(iter(scores))  # a spec's task always names one
    stop_early = best.update(scores[metric], done)
    print(f"  step {done}  val_{metric} {scores[metric]:.4f}  "
          f"(best {best.best_value:.4f} at step {best.best_step})", flush=True)
    if on_validation is not None:
        on_validation(scores, done)
    return stop_early


def _start(checkpoints: Checkpointer | None, named, optimizer, meter: _Meter, best: BestCheckpoint, settings,
           total_steps: int, ranks: OneProcess) -> tuple[int, float, str | None]:
    """(first step, deadline, stopped by): step 0 and the whole time budget, or where the newest
    checkpoint left off and the budget it left, every rank there; with why training had already
    stopped when that checkpoint was its last (None: it goes on, as after a longer time budget)."""
    saved = checkpoints.latest() if checkpoints is not None else None
    first = 0
    if saved is not None:
        first = restore_loop(saved, named, optimizer, meter, best)
        print(f"  resumed at step {first}/{total_steps} from {checkpoints.directory} "
              f"({saved['meter']['train_seconds']:.0f} s of training already done)", flush=True)
    ranks.start(first, saved)
    spent = saved["meter"]["train_seconds"] if saved else 0.0
    deadline = time.perf_counter() + settings.max_minutes * 60 - spent if settings.max_minutes else math.inf
    ended = (saved or {}).get("stopped_by")
    return first, deadline, None if ended == "time" and time.perf_counter() < deadline else ended


def train(
    model, examples: list, settings, *, collate: Callable[[list, int], Batch],
    loss: Callable[[torch.nn.Module, Batch], torch.Tensor], learning_rate: float, weight_decay: float, seed: int,
    pad_id: int, device: torch.device, amp_dtype: torch.dtype | None = None,
    log: Callable[[dict, int], None] = lambda metrics, step: None,
    validate: Callable[[torch.nn.Module, int], dict[str, float]] | None = None,
    on_validation: Callable[[dict[str, float], int], None] | None = None,
    flops_per_token: float | None = None, peak_flops: float | None = None, greater_is_better: bool = True,
    checkpoints: Checkpointer | None = None, loss_weight: Callable[[Batch], int] | None = None,
) -> TrainResult:
    """Train in place. With `validate` and `settings.eval_every_steps`, the model is scored every
    N steps (logged as `val_<metric>`), training stops early after `early_stopping_patience`
    validations without a gain on `settings.select_metric` (better when greater, or when lower
    with `greater_is_better=False`), and the best weights are restored. `collate(examples,
    pad_id)` builds a batch of the task's examples (each has `n_tokens`) and `loss(model, batch)`
    computes its loss. Gradients are clipped to `settings.max_grad_norm` (none when it is None).
    `on_validation(scores, step)` is told every validation; it may raise to stop training (a
    tuning study prunes a trial that way) and the exception leaves `train` unchanged.

    With `checkpoints`, the run starts from the newest checkpoint there (if any) and saves one
    whenever `checkpoints.due()` and at the time budget: resumed, it logs and computes exactly
    what the uninterrupted run would have from that step on. One is saved when training ends too,
    so a kill while the cell evaluates trains nothing again. Under torchrun every rank calls it
    alike, with `loss_weight(batch)`, what `loss` averages over (`pipelines/data_parallel.py`)."""
    total_steps, stopped_by = plan_steps(len(examples), settings)
    warmup = int(total_steps * settings.warmup_ratio)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    lengths = [e.n_tokens for e in examples]
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
    validating = validate is not None and settings.eval_every_steps is not None
    best = BestCheckpoint(params, greater_is_better=greater_is_better, patience=settings.early_stopping_patience)
    meter = _Meter(time.perf_counter(), torch.zeros((), device=device))
    ranks = data_parallel(model, examples, collate, pad_id, loss_weight, seed)
    first, deadline, ended = _start(checkpoints, named, optimizer, meter, best, settings, total_steps, ranks)
    if ended:  # the checkpoint was written as training ended: nothing is left to train
        stopped_by, total_steps = ended, first
    stream = _batch_stream(lengths, settings.batch_size, seed, skip=first * settings.grad_accum)
    model.train()
    step = first - 1
    for step in range(first, total_steps):
        lr = lr_at(step, total_steps, learning_rate, warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        _accumulate(ranks, examples, lengths, stream, settings, collate, loss, pad_id, device, autocast, meter)
        if settings.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        meter.window_steps += 1
        done = step + 1
        out_of_time = ranks.agree(time.perf_counter() >= deadline)
        if done % settings.log_every == 0 or done == total_steps or out_of_time:
            meter.log_window(done, total_steps, lr, log, flops_per_token, peak_flops)
        if validating and (done % settings.eval_every_steps == 0 or done == total_steps or out_of_time):
            val_started = time.perf_counter()
            stop_early = ranks.on_main(partial(_validate, model, done, settings, validate, on_validation, best, log))
            validation_s = time.perf_counter() - val_started
            meter.pause(validation_s)
            deadline += validation_s  # nor against the training budget
            if stop_early and not out_of_time:
                stopped_by = "early_stopping"
                break
        if checkpoints is not None and done < total_steps and not out_of_time and ranks.agree(checkpoints.due()):
            ranks.save(checkpoints, done, partial(loop_state, done, named, optimizer, meter, best))
        if out_of_time:
            stopped_by = "time"
            break
    if checkpoints is not None and step + 1 > first:  # the end of training, with the metrics of its last steps
        ranks.save(checkpoints, step + 1, partial(loop_state, step + 1, named, optimizer, meter, best, stopped_by))
    elapsed = time.perf_counter() - meter.started
    ranks.stop()
    if validating:
        best.restore()
    model.eval()
    return meter.result(step + 1 if total_steps else 0, elapsed, stopped_by, best)


@torch.inference_mode()
def eval_loss(model, examples: list, *, collate: Callable[[list, int], Batch],
              loss: Callable[[torch.nn.Module, Batch], torch.Tensor], weight: Callable[[Batch], int],
              batch_size: int, pad_id: int, device: torch.device) -> float:
    """Mean loss on `examples` (teacher forcing), each batch's mean weighted by `weight(batch)`:
    its target tokens for a generating task, its examples for a classifier. One mechanism for
    every task; no label smoothing enters it, so a perplexity computed from it is honest."""
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
        n = int(weight(batch))
        total += loss(model, batch).item() * n
        count += n
    return total / max(count, 1)
