"""Cost accounting for one cell: wall time, peak RSS, peak VRAM, parameters, bytes on disk."""
from __future__ import annotations

import ctypes
import gc
import os
import resource
import time
from pathlib import Path


def _reset_peak_rss() -> bool:
    # Linux lets a process reset its own high-water mark, giving an exact per-cell peak
    # without a sampling thread; elsewhere we fall back to the process-lifetime peak.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if os.uname().sysname == "Darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class ResourceMeter:
    """Measures one stretch of work: `with ResourceMeter(device) as meter: ...; meter.summary()`."""

    def __init__(self, device):
        self.device = str(device)
        self.started = self.stopped = None

    def __enter__(self):
        _reset_peak_rss()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.stopped = time.perf_counter()
        self.peak_rss = peak_rss_bytes()
        self.peak_vram = cuda_peak_bytes(self.device)
        return False

    def summary(self) -> dict[str, float]:
        out = {"wall_time_s": self.stopped - self.started, "peak_rss_mb": self.peak_rss / 2**20}
        if self.peak_vram is not None:
            out["peak_vram_mb"] = self.peak_vram / 2**20
        return out


def cuda_peak_bytes(device: str) -> int | None:
    """Peak memory torch allocated on the GPU (None on CPU); NVML's view is in MLflow's system metrics."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated(device)


def release_freed_memory() -> None:
    """Hand memory freed by the last cell back to the OS, so the next cell's peak RSS is its own:
    glibc keeps freed heap pages otherwise, and the high-water mark would start above them."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peak may include the previous cell's leftovers
        pass


def bytes_on_disk(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def parameter_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params_total": total, "params_trainable": trainable}
