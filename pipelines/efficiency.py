"""How close a run comes to the hardware's limit: model FLOPs per token, the machine's measured
matmul peak (cached), and MFU, the way nanoGPT reports it.

FLOPs are counted as matmul work only, 2 per multiply-accumulate:
- forward, per token: 2 x (in x out) summed over every linear layer (embeddings excluded: a
  lookup does no matmul work), plus attention's two T x d products per layer, 4 x layers x
  d_model x T for a sequence of T tokens. The output head counts only at the share of tokens
  where it runs: `summary_loss` computes logits at the summary's positions alone, and counting
  the head everywhere would credit the run with work it skips;
- full fine-tuning: forward + backward = 3 x forward;
- frozen base (adapters): the backward still computes input gradients through every layer
  (1 x forward) but weight gradients only for the trainable parameters (2 x trainable).
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from pipelines.sources.models import cache_root


def linear_macs(model) -> int:
    """Multiply-accumulates per token of every linear layer (4-bit ones count as their full shape)."""
    return sum(m.in_features * m.out_features for m in model.modules()
               if isinstance(m, torch.nn.Linear) and not _wraps_linear(m))


def _wraps_linear(module) -> bool:
    # peft keeps the original layer as `base_layer` inside its own Linear; count the inner one only.
    return hasattr(module, "base_layer") and isinstance(module.base_layer, torch.nn.Linear)


def attention_flops_per_token(model, seq_len: float) -> float:
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", 0) or 0
    width = getattr(config, "hidden_size", None) or getattr(config, "d_model", 0) or 0
    return 4.0 * layers * width * seq_len


def head_macs(model) -> int:
    """Multiply-accumulates per token of the output head (0 when the model has none)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return head.in_features * head.out_features if isinstance(head, torch.nn.Linear) else 0


def training_flops_per_token(model, seq_len: float, head_share: float = 1.0) -> float:
    """Model FLOPs per trained token; `head_share`: the share of tokens the output head runs at."""
    body = linear_macs(model) - head_macs(model) * (1.0 - head_share)
    forward = 2.0 * body + attention_flops_per_token(model, seq_len)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if trainable >= total:
        return 3.0 * forward
    return 2.0 * forward + 2.0 * trainable


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: the share of the matmul peak the model's own work reached."""
    return tokens_per_s * flops_per_token / peak_flops


def _machine_key(device: torch.device, dtype: torch.dtype) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return f"{device.type}|{name}|threads={torch.get_num_threads()}|{dtype}"


def cpu_name() -> str:
    """The CPU's model and the features that set its matmul peak: the machine under a cache can
    change (an AVX2 EPYC's bf16 peak, 2.8 GFLOP/s, was once read back on an AVX512-BF16 one)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    field = lambda key: next((line.split(":", 1)[1].strip() for line in info.splitlines()
                              if line.startswith(key)), "")
    flags = set(field("flags").split())
    features = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{field('model name')} family {field('cpu family')} model {field('model')} {'+'.join(features)}"


# Square and transformer-shaped (tokens x d_model @ d_model x d_ff) products: the peak is the best
# any of them reaches, since a single 2048^2 product can sit well below what the model's own
# matmuls achieve (MFU above 100% was the symptom).
PROBE_SHAPE = (256, 256, 256)
PEAK_SHAPES = ((2048, 2048, 2048), (4096, 4096, 4096), (4096, 576, 1536), (4096, 1536, 576), (2048, 768, 3072))


def peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, shapes=PEAK_SHAPES,
               seconds: float = 1.0) -> float:
    """Matmul FLOP/s this machine reaches for `dtype` (best over `shapes`), measured once and cached
    per machine. Measure on an idle machine: the first run of any pipeline does it."""
    path = cache_root() / "peak_flops.json"
    key = _machine_key(device, dtype)
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if key in cached and not _contended(cached, key):
        return cached[key]
    # A small product first, to skip shapes that one multiply alone would keep busy for longer than
    # `seconds`: bf16 without hardware support (no AMX / AVX512-BF16) runs ~1 GFLOP/s on a CPU,
    # where one 4096^3 product would take minutes.
    rate = _matmul_rate(device, dtype, PROBE_SHAPE, seconds / 4)
    affordable = [shape for shape in shapes if 2.0 * math.prod(shape) / rate <= seconds]
    value = max([rate, *(_matmul_rate(device, dtype, shape, seconds) for shape in affordable)])
    cached[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cached, indent=1))
    os.replace(tmp, path)
    return value


def _contended(cached: dict[str, float], key: str) -> bool:
    """A peak below the one cached for fewer threads of the same machine and dtype was measured
    while other work held the cores (two ranks measuring at once once cached 2 GFLOP/s against
    66 for one thread): measure it again."""
    def parts(k: str) -> tuple[str, int, str]:  # (device|name, threads, dtype) of _machine_key's format
        machine, threads, dtype = k.rsplit("|", 2)
        return machine, int(threads.removeprefix("threads=")), dtype

    machine, threads, dtype = parts(key)
    fewer = [value for other, value in cached.items() if "|threads=" in other
             and (p := parts(other))[0::2] == (machine, dtype) and p[1] < threads]
    return bool(fewer) and cached[key] < max(fewer)


def _matmul_rate(device: torch.device, dtype: torch.dtype, shape: tuple[int, int, int], seconds: float) -> float:
    m, k, n = shape
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    a @ b  # warm-up: kernel selection, page faults
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2.0 * m * k * n * runs / (time.perf_counter() - started)
