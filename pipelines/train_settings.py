"""The spec's `train` section: the training budget, the batch shape, the recipe's regularisers and
the loop's checkpoints. Only `pipelines.config` and the loop read it."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Settings that change how a cell is run, not what it computes: left out of a cell's identity (the
# key that reuses a finished cell, and its checkpoints' fingerprint).
# (How many layers are recomputed changes memory and time, never the loss or the gradients: tested.)
HOW_RUN = ("train.checkpoint_every_minutes", "train.checkpoint_dir", "train.checkpointed_layers")
# What a checkpoint may be resumed under changed as well: a longer budget continues the same run.
RESUMABLE_CHANGES = (*HOW_RUN, "train.max_minutes")


class TrainSettings(BaseModel):
    """Training budget and batch shape, the same for every cell of the grid."""

    model_config = ConfigDict(extra="forbid")

    epochs: float | None = Field(None, gt=0, description="passes over the train split (1 if neither this nor max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; with `epochs` too, whichever ends first")
    max_minutes: float | None = Field(None, gt=0, description="wall-clock cap on training per cell")
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_seq_len: int = Field(512, ge=16, description="prompt + target tokens; dialogues are truncated to fit")
    max_target_tokens: int = Field(96, ge=4, description="reference tokens kept for the loss")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    log_every: int = Field(5, ge=1, description="steps between loss logs")
    eval_every_steps: int | None = Field(
        None, ge=1, description="generate and score the validation subset every N steps (off when absent)")
    eval_subset: int = Field(16, ge=1, description="eval rows (the first N, fixed) scored during training")
    select_metric: str | None = Field(
        None, description="validation metric for best-checkpoint selection and early stopping, in the direction "
        "the task gives it; one of the task's validation scores (default: its first)")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop after this many validations without improvement (never when absent)")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="bfloat16: bf16 autocast, and an adapter's frozen base held in bf16 while it trains; "
        "auto: bfloat16 on CUDA with bf16 support, float32 elsewhere (CPUs with AMX too, until bf16 quality is measured)"
    )
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the gradient norm to this (none: no clipping)")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="label smoothing of the training loss (never of eval_loss or perplexity)")
    gradient_checkpointing: bool = Field(
        False, description="recompute each layer's activations in the backward pass: less memory, ~30% more compute")
    checkpointed_layers: float = Field(
        1.0, gt=0, le=1, description="with gradient_checkpointing: the share of the decoder layers recomputed, "
        "spread evenly; each saves about the same memory at the same cost (1: all, the least memory)")
    compile: bool = Field(False, description="torch.compile the model for training (slow to compile; off by default)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps")
    checkpoint_every_minutes: float | None = Field(
        10.0, gt=0, description="save a resumable checkpoint after this much training, so that a killed run loses "
        "at most that much work (and one at the time budget); none: no mid-training checkpoints")
    checkpoint_dir: str = Field(
        "checkpoints", description="where the cells' checkpoints go, one folder per grid cell; a finished cell's "
        "folder is removed")
