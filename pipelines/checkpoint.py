"""Mid-training checkpoints of the training loop, and exact resume from them.

A checkpoint holds everything the next optimizer step depends on, so that a run killed at any
point and resumed computes the same per-step losses as one that was never interrupted:
- the trainable weights only (a PEFT method's adapter; a frozen base is reloaded from its source);
- the optimizer's state; the step, of which the learning-rate schedule is a function;
- the RNG states (dropout), and the data position: the micro-batches consumed, since the batch
  order is a function of the seed alone;
- the loop's counters, the training seconds already spent against the time budget, and the best
  validation so far with its weights;
- the metrics logged since the previous checkpoint (the `Journal`), which reach MLflow only once
  the checkpoint that covers them is on disk: a resumed run shows one value per step. Each value
  keeps the time it was computed, so one sent twice (a kill after the send, before the file
  marking it sent) is the same row, which MLflow's SQL stores keep once.

Beside them, `run.json` names the MLflow run the cell trains in; it is written (atomically) as
the run starts, so a cell killed even before its first checkpoint continues the same run. The
process training the cell holds `.lock` in the folder (`hold`): a second job that reaches the same
folder while the first trains refuses at once, naming the first one's pid, instead of both
writing and deleting the same files.

Written atomically: `torch.save` to a temporary file in the same folder, fsync, `os.replace`.
The newest `keep` files are kept; older ones are deleted only after the new one is complete, so
a full disk or a kill while saving leaves the previous checkpoint intact (a leftover temporary
file is ignored). A complete file that does not load is refused with its path: a run is never
silently restarted from zero.

Under torchrun only rank 0 writes; every rank restores from the same file, and a checkpoint of
several processes also holds each rank's RNG state (`rank_rng`: see `pipelines/data_parallel.py`).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.errors import PlatformError, first_line

_FILE = re.compile(r"step-(\d+)\.pt")
FORMAT = 1


class Journal:
    """Metrics and tables of a run, held back until a checkpoint covers them when `deferred`
    (else passed straight on). Entries are plain data, so a checkpoint can carry them."""

    def __init__(self, log_metrics: Callable[[dict, int], None], log_table: Callable[[dict, str], None],
                 deferred: bool):
        self._sinks = {"metrics": log_metrics, "table": log_table}
        self.deferred = deferred
        self.pending: list[tuple[str, Any, Any]] = []

    def metrics(self, metrics: dict, step: int) -> None:
        self._add(("metrics", {k: float(v) for k, v in metrics.items()}, step, int(time.time() * 1000)))

    def table(self, data: dict[str, list], artifact_file: str) -> None:
        self._add(("table", data, artifact_file))

    def _add(self, entry) -> None:
        if self.deferred:
            self.pending.append(entry)
        else:
            self.replay([entry])

    def replay(self, entries) -> None:
        """Send entries on: a metric with the time it was computed (`log_metrics(metrics, step,
        timestamp)`), a table as it is (`log_table(data, artifact_file)`)."""
        for kind, payload, where, *stamp in entries:
            self._sinks[kind](payload, where, *stamp)

    def flush(self) -> None:
        entries, self.pending = self.pending, []
        self.replay(entries)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def loop_state(step: int, named, optimizer, meter, best, stopped_by: str | None = None) -> dict:
    """What a checkpoint holds: the loop's `named` trainable parameters, its optimizer, its meter
    (counters, training time) and its best validation (`state()` of each), the RNG states, and
    why training stopped, in the checkpoint written when it did (None while it goes on)."""
    return {"step": step, "weights": {name: p.detach() for name, p in named}, "optimizer": optimizer.state_dict(),
            "rng": rng_state(), "meter": meter.state(), "best": best.state(), "stopped_by": stopped_by}


@torch.no_grad()
def restore_loop(state: dict, named, optimizer, meter, best) -> int:
    """Put a checkpoint's state back; returns the number of steps already done."""
    saved = state["weights"]
    missing = [name for name, _ in named if name not in saved]
    if missing:
        raise ValueError(f"the checkpoint lacks trainable weights {missing[:3]} (another method or model?)")
    for name, param in named:
        param.copy_(saved[name])
    optimizer.load_state_dict(state["optimizer"])
    meter.load_state(state["meter"])
    best.load_state(state["best"])
    set_rng_state(state["rng"])
    return state["step"]


def differing_field(saved: dict, current: dict) -> str | None:
    """The first setting that differs between two fingerprints, described; None when equal."""
    for key in sorted(set(saved) | set(current)):
        if saved.get(key, "<absent>") != current.get(key, "<absent>"):
            return f"{key} was {saved.get(key, '<absent>')!r}, is now {current.get(key, '<absent>')!r}"
    return None


class Checkpointer:
    """The checkpoints of one training run in `directory`, every `every_seconds` of training.

    `fingerprint` is what shaped the run (a flat dict of settings); resuming from a checkpoint
    written under another one refuses, naming the differing field. `journal` is flushed after
    each save; the MLflow run being trained is kept beside the files (`claim`) so a restarted
    grid continues that same run. `reads_only`: a rank other than 0 under torchrun, which restores
    from the files but never writes them nor replays their metrics."""

    def __init__(self, directory: Path, every_seconds: float | None, fingerprint: dict, journal: Journal,
                 keep: int = 2, reads_only: bool = False):
        self.directory, self.every_seconds, self.fingerprint = Path(directory), every_seconds, fingerprint
        self.journal, self.keep, self.reads_only = journal, keep, reads_only
        self.last_saved = time.monotonic()
        self.saves, self.save_seconds = 0, 0.0
        self._lock = None

    def hold(self) -> None:
        """Take the folder for this process until `release` (or its exit); refuses, naming the holder's
        pid, when another process holds it. An flock, so a killed holder leaves no stale lock."""
        if self._lock is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / ".lock", "a+")  # noqa: SIM115 (kept open: the lock lives with it)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise PlatformError(f"{self.directory} is in use: process {holder} is training this cell against the "
                                "same tracking store; wait for it to end, or give this job its own "
                                "train.checkpoint_dir") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def due(self) -> bool:
        return self.every_seconds is not None and time.monotonic() - self.last_saved >= self.every_seconds

    def files(self) -> list[Path]:
        found = [p for p in self.directory.glob("step-*.pt") if _FILE.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(_FILE.fullmatch(p.name).group(1)))

    def _config(self) -> str:
        return hashlib.sha1(json.dumps(self.fingerprint, sort_keys=True, default=str).encode()).hexdigest()

    def claim(self, run_id: str) -> None:
        """Record that this folder's cell trains in MLflow run `run_id`, before any checkpoint:
        written to a temporary file and renamed, so a kill leaves the old marker or the new one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        marker, staging = self.directory / "run.json", self.directory / ".run.json.tmp"
        with open(staging, "w") as handle:
            json.dump({"run_id": run_id, "config": self._config()}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, marker)

    def saved_run_id(self) -> str | None:
        """The MLflow run this folder's cell was training in: the one its checkpoints belong to,
        or, before the first checkpoint, the one claimed under this same config; else None."""
        marker = self.directory / "run.json"
        try:
            saved = json.loads(marker.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # not written by `claim` (an older version's, half-written)
            print(f"  {marker} is unreadable ({first_line(exc)}): the cell trains in a new run", flush=True)
            return None
        if not self.files() and saved.get("config") != self._config():
            return None  # nothing trained yet under another config: a new run, not that one continued
        return saved.get("run_id")

    def latest(self) -> dict | None:
        """The newest complete checkpoint's state, checked against this run's fingerprint, with
        the metrics it held replayed if they had not reached the tracking store; None if none."""
        files = self.files()
        if not files:
            return None
        path = files[-1]
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("format") != FORMAT:
                raise ValueError(f"format {payload.get('format')!r}, expected {FORMAT}")
        except Exception as exc:  # a truncated zip, a foreign file, a pickle: all refused the same way
            raise PlatformError(f"checkpoint {path} is corrupt or truncated ({first_line(exc)}); delete it to "
                                "resume from the one before, or restart the cell (--restart)") from None
        differs = differing_field(payload["fingerprint"], self.fingerprint)
        if differs:
            raise PlatformError(f"checkpoint {path} was written under another config: {differs} "
                                "(restart the cell with --restart, or put the setting back)")
        logged = path.with_suffix(".logged")
        if not logged.exists() and not self.reads_only:  # killed between the save and the flush: log what it holds
            self.journal.replay(payload["pending"])
            logged.touch()
        return payload["state"]

    def save(self, step: int, state: dict) -> Path:
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"step-{step:08d}.pt"
        staging = self.directory / f".{path.name}.tmp"
        payload = {"format": FORMAT, "fingerprint": self.fingerprint, "state": state, "pending": self.journal.pending}
        try:
            with open(staging, "wb") as handle:
                torch.save(payload, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, path)
        except OSError as exc:
            staging.unlink(missing_ok=True)
            raise PlatformError(f"cannot write checkpoint {path}: {exc.strerror or first_line(exc)} "
                                "(the previous checkpoint is kept)") from None
        self.journal.flush()
        path.with_suffix(".logged").touch()
        for old in self.files()[: -self.keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".logged").unlink(missing_ok=True)
        self.last_saved = time.monotonic()
        self.saves += 1
        self.save_seconds += time.perf_counter() - started
        print(f"  checkpoint {path.name} ({path.stat().st_size / 2**20:.1f} MB, "
              f"{time.perf_counter() - started:.1f} s)", flush=True)
        return path

    def clear(self) -> None:
        """Remove every checkpoint: the run they belong to finished."""
        shutil.rmtree(self.directory, ignore_errors=True)
