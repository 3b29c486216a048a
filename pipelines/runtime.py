"""Device, precision and thread settings, chosen once per process and deliberately."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1


def configure_threads(num_threads: int | None = None) -> int:
    """One intra-op thread per core and no inter-op pool: oversubscribing two cores made
    generation ~10x slower here. Tokenizers' own pool is turned off for the same reason."""
    threads = num_threads or int(os.environ.get("ADAPTLAB_THREADS", "0")) or available_cores()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # may only be set before any parallel work has started
        pass
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return threads


def pick_device(setting: str = "auto") -> torch.device:
    if setting != "auto":
        return torch.device(setting)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware fast enough to pay for the casts:
    AMX tiles (Sapphire Rapids and later). Measured here: bf16 matmuls ~3x float32's rate with
    AMX; AVX512-BF16 alone (Cooper Lake) is not measured, so `auto` leaves it at float32."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        return bool(capabilities().get("amx_bf16", False))
    try:  # older torch: read the kernel's view of the CPU
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype to autocast to during training, or None for plain float32."""
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    # auto: bf16 where the hardware has bf16 matmul units (CUDA with bf16, CPUs with AMX);
    # float32 elsewhere, where bf16 would be emulated and slower.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None
