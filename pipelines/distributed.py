"""A job of several processes under torchrun, from the same spec as one process:

    torchrun --standalone --nproc_per_node=2 -m pipelines.compare experiments/dialogsum_demo.yaml

One process per device: gloo between CPU processes, NCCL between GPUs. Every rank holds the model
and the optimizer (DDP: `data_parallel.py`); rank 0 leads: it alone opens the tracking runs,
validates, writes checkpoints, scores and logs models, and sends the others each cell it trains
(`send` / `receive`). The others print nothing and drop the `MLFLOW_RUN_ID` of `mlflow run`; the
cores are split between a machine's processes. A collective waits at most
`ADAPTLAB_COLLECTIVE_TIMEOUT_S` (50 s); while rank 0 works alone, the others wait for it without
a deadline (`meet`): that is rank 0 working, not a collective hung. A dead rank is seen at once
(its sockets close), a hung one after the timeout; the ranks still alive then hold a roll call
in torchrun's store (at most 5 s) and stop, naming the culprit (`rank 1 died`, `rank 1 failed:
<its error>`, `rank 1 did not answer`); rank 0 marks its runs FAILED with that. Nothing is
retried: the job stops (`RankFailure`).
"""
from __future__ import annotations

import datetime
import functools
import os
import signal
import socket
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import torch
import torch.distributed as dist

from pipelines.errors import PlatformError, first_line, one_line
from pipelines.runtime import available_cores, configure_threads, pick_device

TIMEOUT_ENV = "ADAPTLAB_COLLECTIVE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 50.0
ROLL_CALL_S = 5.0
SOLO = datetime.timedelta(days=7)  # how long the others wait while rank 0 works alone


class RankFailure(PlatformError):
    """A rank died, failed or stopped answering: the whole job stops, with the rank named."""

    culprits: tuple[str, ...] = ()


class StoppedByMain(Exception):
    """Rank 0 stopped training on purpose (a pruned trial) or failed alone (a validation): follow it."""


class _Job:
    control = None  # a gloo group for rank 0's messages and the waits (a timeout per call)
    store = None
    failing = False  # a failure is being reported: no more collectives
    agreed: BaseException | None = None  # an exception of rank 0's that every rank has been told of


_job = _Job()


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return world_size_env() > 1


def world_size_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def collective_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = 0.0
    if value <= 0:
        raise PlatformError(f"{TIMEOUT_ENV}={raw!r}: expected seconds above 0 (default {DEFAULT_TIMEOUT_S:g})")
    return value


@contextmanager
def processes(followers: bool = True):
    """The job's process group under torchrun (nothing otherwise), torn down on the way out. With
    `followers` (the others wait in `receive` for cells), rank 0 leaving, normally or failing
    outside a cell (a bad spec), tells them there is no more work."""
    if not launched():
        yield
        return
    _init()
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True  # the others were interrupted too
        raise
    finally:
        if followers and not interrupted:
            _release()
        if not _job.failing:
            dist.destroy_process_group()


def _release() -> None:
    if is_main() and not _job.failing:
        try:
            send(None)
        except RankFailure as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)


def relaunch(processes: int, module: str, argv: list[str]) -> None:
    """Become `torchrun --standalone --nproc_per_node=<processes> -m <module> <argv>` (this process
    is replaced: its exit code is torchrun's, and `mlflow run` waits for it as before)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", module, *argv]
    print(f"[distributed] {processes} processes: torchrun --standalone --nproc_per_node={processes} -m {module}",
          flush=True)
    os.execv(sys.executable, command)


def _init() -> None:
    timeout = datetime.timedelta(seconds=collective_timeout())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and local < torch.cuda.device_count():
        torch.cuda.set_device(local)
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo", timeout=timeout)
    _job.control = dist.new_group(backend="gloo", timeout=timeout)
    _job.store = dist.distributed_c10d._get_default_store()
    _job.store.set(f"adaptlab/pid/{rank()}", f"{socket.gethostname()} {os.getpid()}")
    if rank() != 0:
        os.environ.pop("MLFLOW_RUN_ID", None)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (one log: rank 0's)
    configure_threads()
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum, frame) -> None:
    """torchrun stops the others when one rank exits: say which, unless already saying it."""
    if _job.failing:
        return
    failure = _roll_call("torchrun stopped this rank")
    if not failure.culprits:
        raise KeyboardInterrupt  # every rank alive: the job was stopped from outside
    raise failure


def device(setting: str) -> torch.device:
    """`pick_device(setting)`, and under torchrun on CUDA this process's own GPU; a device the
    processes cannot share fails with one line."""
    chosen = pick_device(setting)
    if not launched():
        return chosen
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if per_machine > count:
            raise PlatformError(f"torchrun --nproc_per_node={per_machine} with train.device={setting}: this machine "
                                f"has {count} CUDA device(s), and each process needs its own")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if chosen.type != "cpu":
        raise PlatformError(f"torchrun with train.device={setting}: data-parallel training runs on CPUs (gloo) or "
                            f"CUDA GPUs (NCCL), not on {chosen.type}")
    if per_machine > available_cores() and rank() == 0:
        print(f"[distributed] {per_machine} processes on {available_cores()} cores: each shares a core", flush=True)
    return chosen


def guarded(work):
    """A step that talks to the other ranks, or may fail on this one alone: either way the job
    stops, naming the rank (unless every rank has been told of the exception already)."""

    @functools.wraps(work)
    def run(*args, **kwargs):
        try:
            return work(*args, **kwargs)
        except (RankFailure, StoppedByMain):
            raise
        except Exception as exc:
            if exc is _job.agreed:
                raise
            raise (_roll_call(exc) if _is_comm_error(exc) else failed_alone(exc)) from exc

    return run


def meet(where: str) -> None:
    """Wait, without a deadline, until every rank is here; ranks at different places fail, saying where."""
    dist.monitored_barrier(group=_job.control, timeout=SOLO, wait_all_ranks=True)
    places = all_gathered(where)
    if len(set(places)) > 1:
        raise RankFailure("the ranks are out of step: " + ", ".join(f"rank {r} at {w}" for r, w in enumerate(places)))


def all_gathered(value) -> list:
    found = [None] * world_size()
    dist.all_gather_object(found, value, group=_job.control)
    return found


def from_main(value: int) -> int:
    """Rank 0's `value` on every rank."""
    box = torch.tensor([int(value)])
    dist.broadcast(box, src=0, group=_job.control)
    return int(box.item())


@guarded
def on_main(work):
    """Run `work` on rank 0 alone while the others wait; whether it answered true, or its
    exception (raised again on rank 0, as `StoppedByMain` elsewhere), reaches every rank."""
    outcome, error = 0, None
    if is_main():
        try:
            outcome = 1 if work() else 0
        except Exception as exc:  # noqa: BLE001 (told to every rank, then raised again)
            outcome, error = 2, exc
    meet("rank 0 working alone")
    outcome = from_main(outcome)
    if error is not None:
        _job.agreed = error
        raise error
    if outcome == 2:
        raise StoppedByMain("rank 0 stopped training")
    return bool(outcome)


@guarded
def send(payload) -> None:
    """Rank 0: hand the others their next cell (None: there is none)."""
    meet("the next cell")
    dist.broadcast_object_list([payload], src=0, group=_job.control)


@guarded
def receive():
    """A rank other than 0: the next cell rank 0 trains, or None when it is done."""
    box = [None]
    meet("the next cell")
    dist.broadcast_object_list(box, src=0, group=_job.control)
    return box[0]


def _is_comm_error(exc: BaseException) -> bool:
    return isinstance(exc, dist.DistError) or any(k in str(exc) for k in ("gloo", "NCCL", "Connection", "imed out", "monitoredBarrier"))


def _read(key: str) -> str | None:
    return _job.store.get(key).decode() if _job.store.check([key]) else None


def _gone(r: int) -> bool:
    """Whether rank r's process, if on this machine, has exited (a zombie has)."""
    where = _read(f"adaptlab/pid/{r}")
    if where is None or where.split()[0] != socket.gethostname():
        return False
    try:
        return Path(f"/proc/{where.split()[1]}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _roll_call(cause) -> RankFailure:
    """After a failed collective: which other ranks died, failed, or did not answer within ROLL_CALL_S."""
    _job.failing = True
    me, verdicts = rank(), {}
    try:
        _job.store.set(f"adaptlab/status/{me}", "alive")
        deadline = time.monotonic() + ROLL_CALL_S
        while len(verdicts) < world_size() - 1:
            for r in set(range(world_size())) - {me} - set(verdicts):
                status = _read(f"adaptlab/status/{r}")
                if status == "alive":
                    verdicts[r] = None
                elif status:
                    verdicts[r] = f"rank {r} {status}"
                elif _gone(r):
                    verdicts[r] = f"rank {r} died"
                elif time.monotonic() >= deadline:
                    verdicts[r] = f"rank {r} did not answer within {collective_timeout():g} s (hung?)"
            time.sleep(0.05)
    except Exception as exc:  # noqa: BLE001 (the store is gone too: outside torchrun it lives in rank 0)
        verdicts[-1] = f"the other ranks cannot be reached ({first_line(exc)})"
    culprits = [verdicts[r] for r in sorted(verdicts) if verdicts[r]]
    text = cause if isinstance(cause, str) else first_line(cause)
    failure = RankFailure(f"{'; '.join(culprits) or 'every rank is alive'}; rank {me} stopped too ({text})")
    failure.culprits = tuple(culprits)
    return failure


def failed_alone(exc: Exception) -> RankFailure:
    """This rank failed alone: leave the reason in the store, for the others to name it, and stop."""
    _job.failing = True
    with suppress(Exception):  # the store gone as well: the others find this rank dead instead
        _job.store.set(f"adaptlab/status/{rank()}", f"failed: {one_line(exc)}")
    return RankFailure(f"rank {rank()} failed: {one_line(exc)}")
