"""Device, precision and thread settings, chosen once per process and deliberately."""
from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path

import torch

from pipelines.errors import PlatformError


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1


def configure_threads(num_threads: int | None = None) -> int:
    """One intra-op thread per core and no inter-op pool: oversubscribing two cores made
    generation ~10x slower here. Tokenizers' own pool is turned off for the same reason. The
    processes torchrun starts on one machine (LOCAL_WORLD_SIZE) split its cores between them."""
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = num_threads or int(os.environ.get("ADAPTLAB_THREADS", "0")) or max(1, available_cores() // processes)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # may only be set before any parallel work has started
        pass
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return threads


def serving_threads() -> int:
    """Threads for one `mlflow models serve` worker process: ADAPTLAB_THREADS if set, else the
    cores split among MLFLOW_MODELS_WORKERS workers (the env var `mlflow models serve --workers`
    also reads). Two workers on two cores thus take one thread each, not two each."""
    explicit = int(os.environ.get("ADAPTLAB_THREADS", "0"))
    if explicit:
        return explicit
    workers = os.environ.get("MLFLOW_MODELS_WORKERS")
    if workers is None and multiprocessing.parent_process() is not None:
        # uvicorn starts its workers as child processes only when there are several; the
        # `--workers` flag does not reach them, so each would take every core.
        logging.getLogger(__name__).warning(
            "several server workers share %d cores but MLFLOW_MODELS_WORKERS is not set: each takes "
            "them all. Serve with MLFLOW_MODELS_WORKERS=N instead of --workers N, or set ADAPTLAB_THREADS.",
            available_cores())
    return max(1, available_cores() // max(1, int(workers or 1)))


def pick_device(setting: str = "auto") -> torch.device:
    if setting != "auto":
        return check_device(setting)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _backend(kind: str):
    """The torch module that says whether a device type is present (torch.cuda, torch.backends.mps, ...)."""
    if kind == "mps":
        return getattr(torch.backends, "mps", None)
    return getattr(torch, kind, None)


def check_device(setting: str, what: str = "device") -> torch.device:
    """`setting` as a device this machine has, or a PlatformError saying what it has instead.
    torch accepts `torch.device("cuda")` on a machine without CUDA and fails only when the first
    tensor moves there, after the model has loaded: this check runs first. `auto` always passes."""
    if setting == "auto":
        return pick_device("auto")
    try:
        device = torch.device(setting)
    except (RuntimeError, TypeError, ValueError):
        raise PlatformError(f"{what}: '{setting}' is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    backend = _backend(device.type)
    present = backend is not None and callable(getattr(backend, "is_available", None)) and backend.is_available()
    if not present:
        raise PlatformError(f"{what}: '{setting}' is not available on this machine (it has {available_devices()}); "
                            "use auto or cpu")
    count = getattr(backend, "device_count", None)
    if device.index is not None and callable(count) and device.index >= count():
        raise PlatformError(f"{what}: '{setting}' does not exist here ({count()} {device.type} device(s): "
                            f"{device.type}:0 to {device.type}:{count() - 1})")
    return device


def available_devices() -> str:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append(f"cuda x{torch.cuda.device_count()}")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return ", ".join(found)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware: AMX tiles (Sapphire Rapids and
    later) or AVX512-BF16 (Cooper Lake, Zen 4). Measured: AMX ~3x float32's matmul rate; on an AVX512-BF16
    AMD EPYC (Zen 4) a 4-layer GPT trained at 1.5x float32's tokens/s. Without either, bf16 is emulated."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found = capabilities()
        return bool(found.get("amx_bf16", False) or found.get("avx512_bf16", False))
    try:  # older torch: read the kernel's view of the CPU
        flags = Path("/proc/cpuinfo").read_text()
        return "amx_bf16" in flags or "avx512_bf16" in flags
    except OSError:
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype to autocast to during training, or None for plain float32."""
    if precision == "float32":
        return None
    if precision == "bfloat16":
        if device.type == "cpu" and not cpu_has_fast_bf16():
            print("[runtime] precision bfloat16 on a CPU without AMX or AVX512-BF16: bf16 matmuls are emulated and slower")
        return torch.bfloat16
    # auto: bf16 on GPUs that support it. On CPUs with AMX (`cpu_has_fast_bf16`) bf16 is faster,
    # but `auto` stays float32 there until benchmarks/bf16_vs_fp32.py has shown that training in
    # bf16 keeps eval loss and ROUGE: every figure reported so far was measured in float32.
    # `precision: bfloat16` opts in (on a CPU without bf16 hardware it is emulated and slower: warned).
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None
