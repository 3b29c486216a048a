"""A cheaper forward for peft's LoRA layers: the adapter's low-rank product is added onto the base
layer's output in place, as one `addmm_`, instead of peft's `result + lora_B(lora_A(dropout(x))) * scaling`.

Why: peft's line allocates three output-sized tensors per adapted layer (lora_B's output, its
scaled copy, the sum) and, in the backward, scales the full output gradient once more; with LoRA
on all 7 linear layers of a block that is 21 full-size temporaries a block, each one freshly
allocated (and on the CPU page-faulted) memory. Here the forward writes `h @ B.T * scaling`
(h = dropout(x) @ A.T, rank-r wide) straight into the base output, and the backward scales only
r-wide tensors. The backward keeps less than peft's: the adapter input (x itself, unless peft's
cast made a copy), the 1-byte dropout mask, h, A and B; it recomputes the dropped-out input from
x and the mask instead of holding a float copy of it per layer. The base layer is called as peft calls
it, so its own backward is untouched (a frozen weight gets no gradient and autograd does not
save x for one).

Numerics: the same dtypes as peft's forward, step by step (the input cast to the adapter's
dtype, dropout in that dtype, autocast's dtype for the adapter matmuls, the sum rounded to the
base output's dtype, and for 4-bit layers peft's bnb rules). The masks are AdapterDropout's
(`pipelines/methods/adapter_dropout.py`), drawn by the same call from torch's generator, so
`torch.manual_seed` and gradient checkpointing give the same masks as before. What may differ
is rounding: `s * (h @ B.T)` is fused into the add (one gemm with alpha and beta = 1) instead of
rounding `h @ B.T`, then `* s`, then `+`, and the backward scales r-wide tensors instead of the
output gradient. With MKL on AVX-512 here, float32 outputs and gradients came out bit for bit
equal to peft's, on the tests' tiny llama and on a SmolLM2-sized layer (576 -> 1536, 512 tokens),
and the pinned losses did not move; another BLAS may round the fused gemm differently, so
tests/pipelines/methods/test_fused_lora.py holds them to 1e-5 (bf16 autocast: to bf16 rounding).

Where it applies (checked at every call, so a layer that is later merged, disabled or given a
second adapter falls back by itself): peft's `lora.Linear` (an nn.Linear, or a GPT-2 Conv1D:
`fan_in_fan_out` only transposes the merged delta weight, peft's forward never reads it) and
`lora.bnb.Linear4bit` (QLoRA: bitsandbytes dequantises inside the base layer's own forward, so
the add onto its output is the same; that output is a view, which peft clones before adding
to, so here the sum goes to a new tensor in the same one addmm), with exactly one active LoRA adapter, not merged,
adapters not disabled, no `adapter_names` (mixed batches) or other forward arguments.
Where it does not, and peft's forward runs:
- DoRA (`use_dora`) and peft's other variants (`lora_variant`): DoRA rescales by the norm of the
  merged weight, which needs W + s * B @ A per column, not just a product added to the output.
- `lora_bias=True` (a bias on lora_B): the project does not use it, and the fused add has no term for it.
- 8-bit bitsandbytes, HQQ, EETQ, torchao, Embedding and Conv layers: other classes with their own
  forward, and no test here shows the fused add equal on them.
- an input whose dtype is not the adapter's with casting off and no autocast: peft fails there
  (a dtype mismatch), and so does the fallback.
Only `forward` is replaced, on the instance: parameters, state dict and `save_pretrained` are
peft's, so a saved adapter loads in plain peft. `copy.deepcopy` keeps the fused forward; a pickle
of the whole model would not (the project saves adapters and state dicts, never pickled models).
"""
from __future__ import annotations

import sys
from types import MethodType

import torch

from pipelines.methods.adapter_dropout import AdapterDropout, keep_mask


def use_fused_lora(model) -> int:
    """Give every adapted layer the fusion can serve the fused forward; returns how many. DoRA
    layers keep peft's. Calling it again patches nothing twice."""
    from peft.tuners.lora import Linear

    bnb = sys.modules.get("peft.tuners.lora.bnb")  # loaded whenever a model has a 4-bit layer
    four_bit = getattr(bnb, "Linear4bit", None)
    patched = 0
    for module in model.modules():
        if type(module) not in (Linear, four_bit) or "forward" in vars(module):
            continue
        if module.lora_variant or any(module.use_dora.values()):
            continue  # DoRA: the weight norm is not a product added to the output
        module.forward = MethodType(_fused_forward_4bit if type(module) is four_bit else _fused_forward, module)
        patched += 1
    return patched


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return _forward(self, x, args, kwargs, four_bit=False)


def _fused_forward_4bit(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return _forward(self, x, args, kwargs, four_bit=True)


def _forward(layer, x, args, kwargs, four_bit: bool) -> torch.Tensor:
    name = None if args or kwargs else _plain_adapter(layer)
    if name is None:
        return type(layer).forward(layer, x, *args, **kwargs)
    lora_a, lora_b = layer.lora_A[name].weight, layer.lora_B[name].weight
    scaling, dropout = layer.scaling[name], layer.lora_dropout[name]
    # peft's casts: lora.Linear always casts the adapter input to the adapter's dtype; its bnb
    # Linear4bit only outside (CUDA) autocast, and then rounds the adapter's output to the base's.
    cast = not four_bit or not torch.is_autocast_enabled()
    x_adapter = layer._cast_input_dtype(x, lora_a.dtype) if cast else x
    compute = _compute_dtype(x_adapter, lora_a)
    if compute is None:
        return type(layer).forward(layer, x, *args, **kwargs)  # peft raises the dtype mismatch
    out = layer.base_layer(x)
    if torch.promote_types(out.dtype, compute) != out.dtype and four_bit and not cast:
        # peft's bnb sum is then promoted past the base's dtype: not an add onto the output (rare:
        # fp16 vs bf16 under CUDA autocast), so its own arithmetic, once.
        return out + layer.lora_B[name](layer.lora_A[name](dropout(x_adapter))) * scaling
    source, keep, keep_scale = _adapter_input(dropout, x_adapter)
    return _AddLowRank.apply(out, source, keep, keep_scale, lora_a, lora_b, scaling, compute, four_bit and cast)


def _plain_adapter(layer) -> str | None:
    """The one active plain-LoRA adapter of `layer`, or None where peft's forward must run."""
    if layer.disable_adapters or layer.merged:
        return None
    names = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(names) != 1:
        return None  # none (peft adds nothing) or several (summed one by one)
    name = names[0]
    if name in layer.lora_variant or layer.lora_B[name].bias is not None:
        return None
    return name


def _compute_dtype(x_adapter: torch.Tensor, lora_a: torch.Tensor) -> torch.dtype | None:
    """The dtype lora_A's matmul runs in: autocast's, else the adapter's own (None: a mismatch)."""
    device = x_adapter.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return lora_a.dtype if x_adapter.dtype == lora_a.dtype else None


def _adapter_input(dropout, x: torch.Tensor):
    """(source, keep mask or None, scale): AdapterDropout's mask is drawn here, by the same call
    as its forward, and applied inside the fused op so that only the 1-byte mask is kept for the
    backward. Any other dropout (torch's, AdapterDropout off the CPU, Identity, eval mode) runs
    as a module of its own before the fused op."""
    if isinstance(dropout, AdapterDropout) and dropout.training and dropout.p > 0 and x.device.type == "cpu":
        return x, keep_mask(x.shape, dropout.p), 1.0 / (1.0 - dropout.p)
    return dropout(x), None, 1.0


def _dropped(source: torch.Tensor, keep: torch.Tensor | None, keep_scale: float) -> torch.Tensor:
    # AdapterDropout's own arithmetic (mask times scale in the input's dtype, then times x), so
    # the values are bit for bit those of the module.
    return source if keep is None else source * keep.to(source.dtype).mul_(keep_scale)


class _AddLowRank(torch.autograd.Function):
    """out + scaling * dropped(source) @ A.T @ B.T, written into `out` where it may be.
    `cast_product`: peft's bnb rule, the product rounded to out's dtype before the sum."""

    @staticmethod
    def forward(ctx, out, source, keep, keep_scale, lora_a, lora_b, scaling, compute, cast_product):
        with torch.autocast(source.device.type, enabled=False):  # every dtype below is explicit
            x2d = _dropped(source, keep, keep_scale).reshape(-1, source.shape[-1]).to(compute)
            h = x2d @ lora_a.to(compute).t()  # (tokens, r): the only new tensor kept for backward
            b_t = lora_b.to(compute).t()
            in_place = out._base is None and out.is_contiguous()  # bnb's output is a view
            out2d = out.view(-1, out.shape[-1]) if in_place else out.reshape(-1, out.shape[-1])
            if out.dtype == compute:
                summed = out2d.addmm_(h, b_t, alpha=scaling) if in_place else torch.addmm(out2d, h, b_t, alpha=scaling)
            else:  # peft's sum in the promoted dtype, rounded to out's (lora.Linear's final .to)
                product = torch.mm(h, b_t).mul_(scaling)
                product = product.to(out.dtype) if cast_product else product
                summed = out2d.add_(product) if in_place else torch.add(out2d, product).to(out.dtype)
        ctx.save_for_backward(source, keep, h, lora_a, lora_b)
        ctx.keep_scale, ctx.scaling, ctx.compute = keep_scale, scaling, compute
        if in_place:
            ctx.mark_dirty(out)
            return out
        return summed.view(out.shape)

    @staticmethod
    def backward(ctx, grad):
        source, keep, h, lora_a, lora_b = ctx.saved_tensors
        grad_source = grad_a = grad_b = None
        with torch.autocast(source.device.type, enabled=False):
            g2d = grad.reshape(-1, grad.shape[-1]).to(ctx.compute)
            grad_h = (g2d @ lora_b.to(ctx.compute)).mul_(ctx.scaling)  # r wide: the cheap place to scale
            if ctx.needs_input_grad[5]:
                grad_b = (g2d.t() @ h).mul_(ctx.scaling).to(lora_b.dtype)
            # The scaled mask once, for both uses: AdapterDropout's arithmetic, in the source's dtype.
            mask = None if keep is None else keep.to(source.dtype).mul_(ctx.keep_scale).view(-1, source.shape[-1])
            if ctx.needs_input_grad[4]:
                x2d = source.reshape(-1, source.shape[-1])
                x2d = (x2d if mask is None else x2d * mask).to(ctx.compute)  # recomputed, not kept
                grad_a = (grad_h.t() @ x2d).to(lora_a.dtype)
            if ctx.needs_input_grad[1]:
                grad_x = (grad_h @ lora_a.to(ctx.compute)).to(source.dtype)
                grad_source = (grad_x if mask is None else grad_x.mul_(mask)).view(source.shape)
        # The base output's gradient is the output's: the sum passes it through unchanged.
        return grad, grad_source, None, None, grad_a, grad_b, None, None, None
