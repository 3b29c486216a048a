"""The training loop's view of the processes that train together: `OneProcess` (nothing to share)
or, under torchrun, `DataParallel`. The loop calls the same methods either way, and the one-process
path does exactly what the loop did before there were several.

Under torchrun (`pipelines/distributed.py` says who does what):
- **The batch.** `train.batch_size` stays the global batch, so a spec computes the same thing on
  any number of processes: each rank takes every N-th example of the same length-grouped batch
  (`batches.share_of`; PyTorch's `DistributedSampler` knows nothing of lengths).
- **The loss.** One process computes a micro-batch's mean loss over its scored tokens (or its
  examples: the task's `loss_weight` says which). A rank computes its share's mean times its share
  of the micro-batch's scored tokens; the parts add up to that mean, which is what is logged. DDP
  averages the gradients over the ranks, so each rank back-propagates its part times N. With the
  same global batch, N processes log the one-process losses (to float rounding: tests/distributed).
  A rank whose share is empty (a batch smaller than N) runs its first example, weighted 0.
- **Gradients** are all-reduced once per optimizer step, on its last micro-batch (`no_sync`).
- **Decisions** (the time budget, a checkpoint save, early stopping, a pruned trial) are rank 0's,
  broadcast (`agree`, `on_main`), so the ranks stop together. Validation and checkpoint writes run
  on rank 0 alone while the others wait.
- **RNG.** Rank 0 keeps the one-process stream; rank r > 0 reseeds from (seed, r, step) when
  training starts, so dropout masks differ between ranks. A checkpoint holds every rank's RNG
  state (`rank_rng`, beside rank 0's `rng`, the one-process format otherwise); resumed on as many
  processes, each rank gets its own back, so the run resumes exactly (on another count, reseeded).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from pipelines import distributed
from pipelines.batches import padded_tokens, share_of
from pipelines.checkpoint import rng_state, set_rng_state
from pipelines.distributed import RankFailure, guarded


class OneProcess:
    """One process: every method does what the loop did alone."""

    def __init__(self, model, examples: list):
        self.model, self.examples = model, examples

    def start(self, first: int, saved: dict | None) -> None:
        pass

    def share(self, idx: list[int]) -> list[int]:
        return idx

    def syncing(self, last: bool):
        return nullcontext()

    def loss(self, loss, batch):
        return loss(self.model, batch)

    def backward(self, part: torch.Tensor) -> None:
        part.backward()

    def total(self, part: torch.Tensor) -> torch.Tensor:
        return part.detach()

    def slots(self, idx: list[int]) -> int:
        return padded_tokens([self.examples[i] for i in idx])

    def agree(self, flag: bool) -> bool:
        return flag

    def on_main(self, work) -> bool:
        return bool(work())

    def save(self, checkpoints, step: int, state) -> None:
        checkpoints.save(step, state())

    def stop(self) -> None:
        pass


class _Replica(DistributedDataParallel):
    """DDP that answers what a task's loss asks of the model (its config, its peft state) from the model."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


class DataParallel(OneProcess):
    """This rank's share of each global batch, its part of the loss, DDP's gradients and rank 0's
    decisions. `share(idx)` comes first for each micro-batch: `loss` and `slots` read what it found."""

    def __init__(self, model, examples: list, collate, pad_id: int, loss_weight, seed: int):
        super().__init__(model, examples)
        if loss_weight is None:
            raise ValueError("under torchrun, train() needs `loss_weight` (what a batch's mean loss averages over)")
        self.collate, self.pad_id, self.loss_weight, self.seed = collate, pad_id, loss_weight, seed
        self.rank, self.world, self.ddp = distributed.rank(), distributed.world_size(), None
        self.fraction, self.shared_slots = 0.0, 0

    @guarded
    def start(self, first: int, saved: dict | None) -> None:
        """Every rank at the same step with its own RNG stream, and the model in DDP (rank 0's weights)."""
        distributed.meet("the start of training")
        steps = distributed.all_gathered(first)
        if len(set(steps)) > 1:
            raise RankFailure(f"the ranks resumed at different steps {steps} (a checkpoint changed while they read it?)")
        per_rank = (saved or {}).get("rank_rng")
        if per_rank and len(per_rank) == self.world:
            set_rng_state(per_rank[self.rank])
        elif self.rank:
            torch.manual_seed(hash((self.seed, self.rank, first)) & (2**63 - 1))
        on_gpu = next(self.model.parameters()).device.type == "cuda"
        self.ddp = _Replica(self.model, device_ids=[torch.cuda.current_device()] if on_gpu else None,
                            forward_sync_buffers=False)  # rank 0's weights and buffers at the start only

    def share(self, idx: list[int]) -> list[int]:
        shares = [share_of(idx, r, self.world) for r in range(self.world)]
        weights = [int(self.loss_weight(self.collate([self.examples[i] for i in s], self.pad_id))) if s else 0
                   for s in shares]
        self.fraction = weights[self.rank] / max(sum(weights), 1)
        self.shared_slots = sum(padded_tokens([self.examples[i] for i in s]) for s in shares if s)
        return shares[self.rank] or idx[:1]

    def syncing(self, last: bool):
        return nullcontext() if last else self.ddp.no_sync()

    @guarded
    def loss(self, loss, batch):
        return loss(self.ddp, batch) * self.fraction

    @guarded
    def backward(self, part: torch.Tensor) -> None:
        (part * self.world).backward()

    @guarded
    def total(self, part: torch.Tensor) -> torch.Tensor:
        total = part.detach().clone()
        dist.all_reduce(total)
        return total

    def slots(self, idx: list[int]) -> int:
        return self.shared_slots

    @guarded
    def agree(self, flag: bool) -> bool:
        return bool(distributed.from_main(flag))

    def on_main(self, work) -> bool:
        return distributed.on_main(work)

    def save(self, checkpoints, step: int, state) -> None:
        """Rank 0 writes the checkpoint, with every rank's RNG state; the others wait for it."""
        states = guarded(distributed.all_gathered)(rng_state())
        distributed.on_main(lambda: checkpoints.save(step, {**state(), "rank_rng": states}))

    def stop(self) -> None:
        self.ddp = None


def data_parallel(model, examples: list, collate, pad_id: int, loss_weight, seed: int) -> OneProcess:
    """What the loop shares with other processes: nothing, unless under torchrun."""
    if distributed.active():
        return DataParallel(model, examples, collate, pad_id, loss_weight, seed)
    return OneProcess(model, examples)
