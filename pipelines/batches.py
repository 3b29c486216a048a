"""Batch order and padding accounting for the training loop, whatever the task: similar lengths
together (little compute spent on padding), in a random order fixed by the seed; and each
process's share of a batch when several train together."""
from __future__ import annotations

import random


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, group: int = 32) -> list[list[int]]:
    """Shuffled batches of similar-length examples, so little compute goes to padding.

    Indices are shuffled, cut into groups of `group` batches, sorted by length inside a group,
    then the batches are shuffled: random order, short padding.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    span = batch_size * group
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def share_of(batch: list[int], rank: int, world: int) -> list[int]:
    """Process `rank`'s examples of a global batch: every `world`-th, from its rank on. A batch is
    sorted by length, so the shares pad to about the same width (empty when the batch is short)."""
    return batch[rank::world]


def padded_tokens(batch: list) -> int:
    """Token slots `collate` fills for this batch, padding included."""
    slots = len(batch) * max(len(item.input_ids) for item in batch)
    if getattr(batch[0], "seq2seq", False):  # other tasks' examples have no decoder side
        slots += len(batch) * max(len(item.labels) for item in batch)
    return slots
