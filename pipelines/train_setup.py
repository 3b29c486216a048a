"""How a model is set up for the training loop alone, and put back as it was afterwards.

- A frozen base in the autocast dtype: adapters (LoRA, DoRA, IA3, prefix, prompt) train against
  frozen weights, so those are held in bf16 while training: half the memory, and autocast no
  longer casts every weight at every step. Trainable parameters, and with them the optimizer,
  stay float32. The float32 base is put back when training ends, so evaluation, the saved
  adapter and the served model (float32 base + adapter, merged) all see the model as loaded.
  Full fine-tuning has no frozen weights: it keeps float32 master weights under autocast.
- Gradient checkpointing (`train.gradient_checkpointing`): HF's own, non-reentrant, on every
  decoder layer or on a share of them (`train.checkpointed_layers`): every layer's activations
  weigh about the same, so a share buys that share of the memory saving for that share of the
  recompute.
- `torch.compile` (`train.compile`), off by default: compiling took ~170 s here for ~4%.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from transformers.modeling_layers import GradientCheckpointingLayer

from pipelines.errors import PlatformError


@contextmanager
def prepared_for_training(model, settings, amp_dtype: torch.dtype | None):
    """`with prepared_for_training(model, spec.train, amp): train(model, ...)`; the model is put
    back as it was on the way out (float32 base, no checkpointing, not compiled)."""
    if settings.gradient_checkpointing:
        _enable_checkpointing(model, settings.checkpointed_layers)
    originals = frozen_weights_to(model, amp_dtype) if amp_dtype is not None else {}
    if settings.compile:
        model.compile(dynamic=True)  # in place: the loop calls the model as before
    try:
        with _adapter_input_casts_off(model) if originals else nullcontext():
            yield model
    finally:
        if settings.compile:
            model._compiled_call_impl = None  # nn.Module.compile has no public undo; generation runs eager
        if settings.gradient_checkpointing:
            model.gradient_checkpointing_disable()
            if hasattr(model, "disable_input_require_grads"):
                model.disable_input_require_grads()
        restore_weights(model, originals)


def frozen_weights_to(model, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Cast frozen floating-point parameters to `dtype` in place; returns the originals (kept on
    the CPU, so a GPU holds only the bf16 copy). Quantized (integer) weights are left alone."""
    originals = {}
    for name, param in model.named_parameters():  # tied weights appear once
        if not param.requires_grad and param.dtype.is_floating_point and param.dtype != dtype:
            originals[name] = param.data.cpu()
            param.data = param.data.to(dtype)
    return originals


@torch.no_grad()
def restore_weights(model, originals: dict[str, torch.Tensor]) -> None:
    if not originals:
        return
    for name, param in model.named_parameters():
        if name in originals:
            param.data = originals[name].to(param.device)


@contextmanager
def _adapter_input_casts_off(model):
    """peft casts each adapter's input to the adapter's dtype (float32), which here would copy
    every bf16 activation to float32 once per adapted layer; autocast already runs the adapter's
    matmuls in bf16, so the cast is switched off. This is the flag peft's own
    `disable_input_dtype_casting` sets, set only where a layer has it (IA3's layers do not,
    and that helper fails on them)."""
    layers = [m for m in model.modules() if "cast_input_dtype_enabled" in vars(m)]
    before = [m.cast_input_dtype_enabled for m in layers]
    for layer in layers:
        layer.cast_input_dtype_enabled = False
    try:
        yield
    finally:
        for layer, value in zip(layers, before):
            layer.cast_input_dtype_enabled = value


def _enable_checkpointing(model, share: float = 1.0) -> None:
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise PlatformError(f"train.gradient_checkpointing: {type(model).__name__} does not support it")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    kept = checkpointed_indices(len(layers), share)
    for index, layer in enumerate(layers):
        layer.gradient_checkpointing = index in kept
    if hasattr(model, "enable_input_require_grads"):
        # Needed by reentrant checkpointing when the embeddings are frozen (PEFT); harmless otherwise.
        model.enable_input_require_grads()


def checkpointed_indices(count: int, share: float) -> set[int]:
    """Which of `count` layers to recompute for `share` of them, spread evenly (at least one)."""
    chosen = max(1, round(count * share)) if count else 0
    return {int(i * count / chosen) for i in range(chosen)}
