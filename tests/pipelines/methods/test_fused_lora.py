"""The fused LoRA forward equals peft's own: the same layers, weights and dropout masks through
both forwards give the same outputs and gradients (of the input, lora_A and lora_B) to 1e-5, in
train mode with dropout and in eval mode; its saved adapter is peft's; DoRA keeps peft's forward."""
from contextlib import contextmanager

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from pipelines.methods import DoraMethod, LoraMethod, QloraMethod
from pipelines.methods.adapter_dropout import use_adapter_dropout
from pipelines.methods.fused_lora import use_fused_lora
from pipelines.sources.models import load_lm

CPU = torch.device("cpu")
TOL = {"rtol": 1e-5, "atol": 1e-5}


class _One(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.lin = layer

    def forward(self, x):
        return self.lin(x)


def _wrapped(layer, dropout=0.2, fan_in_fan_out=False):
    """A peft LoRA on one layer, with the project's dropout and random (not zero) adapters."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["lin"], fan_in_fan_out=fan_in_fan_out)
    model = get_peft_model(_One(layer), config)
    use_adapter_dropout(model)
    return _randomised(model)


def _randomised(model):
    torch.manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)  # lora_B starts at zero: lora_A's gradient would be zero too
    return model


@contextmanager
def peft_forward(model):
    """The same model with peft's own forward, for the duration."""
    fused = {m: vars(m).pop("forward") for m in model.modules() if "forward" in vars(m)}
    try:
        yield model
    finally:
        for module, forward in fused.items():
            module.forward = forward


def _step(model, x, train: bool, call=lambda m, x: m(x)):
    """Output and gradients of one forward/backward, with the dropout masks seeded."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    torch.manual_seed(11)
    out = call(model, x)
    out.backward(torch.linspace(-1, 1, out.numel()).view(out.shape).to(out.dtype))
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(g.abs().sum() > 0 for g in grads.values())
    return {"out": out.detach(), "x": x.grad, **grads}


def _assert_fused_equals_peft(model, x, train, call=lambda m, x: m(x), **tol):
    fused = _step(model, x, train, call)
    with peft_forward(model):
        plain = _step(model, x, train, call)
    assert fused.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(fused[name], plain[name], **(tol or TOL), msg=name)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(10, 16), (2, 5, 16)], ids=["2d", "3d"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_fused_linear_equals_peft(bias, shape, train):
    torch.manual_seed(0)
    model = _wrapped(torch.nn.Linear(16, 12, bias=bias))
    assert use_fused_lora(model) == 1
    _assert_fused_equals_peft(model, torch.randn(shape), train)


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["identity", "torch-dropout"])
def test_fused_with_identity_or_torchs_dropout_equals_peft(dropout):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)  # peft's own modules: nn.Identity at p=0, nn.Dropout otherwise
    model = _randomised(get_peft_model(_One(torch.nn.Linear(16, 12)), LoraConfig(r=4, lora_dropout=dropout, target_modules=["lin"])))
    assert use_fused_lora(model) == 1
    _assert_fused_equals_peft(model, torch.randn(3, 4, 16), train=True)


def test_fused_conv1d_equals_peft():
    # GPT-2's Conv1D takes fan_in_fan_out, which only the merged delta weight reads.
    torch.manual_seed(0)
    model = _wrapped(Conv1D(12, 16), fan_in_fan_out=True)
    assert use_fused_lora(model) == 1
    _assert_fused_equals_peft(model, torch.randn(2, 5, 16), train=True)


def _embeds(model, seed=3):
    torch.manual_seed(seed)
    return torch.randn(2, 7, model.config.hidden_size)


def _logits(model, x):
    return model(inputs_embeds=x).logits


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("method", [LoraMethod(r=4, dropout=0.1), QloraMethod(r=4, dropout=0.1)], ids=lambda m: m.name)
def test_fused_llama_equals_peft(method, train, tiny_lm_dir):
    model, _, _ = load_lm(str(tiny_lm_dir), device=CPU, **method.load_kwargs(CPU))
    model = _randomised(method.apply(model))
    fused = [m for m in model.modules() if "forward" in vars(m)]
    assert len(fused) == 2 * 7  # every adapted linear of both blocks, 4-bit ones included
    _assert_fused_equals_peft(model, _embeds(model), train, _logits)


def test_fused_llama_under_gradient_checkpointing_replays_the_masks(tiny_lm_dir):
    model = _randomised(LoraMethod(r=4, dropout=0.1).apply(load_lm(str(tiny_lm_dir), device=CPU)[0]))
    x = _embeds(model)
    plain = _step(model, x, True, _logits)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = _step(model, x, True, _logits)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], **TOL, msg=name)


def test_saved_adapter_of_a_fused_model_loads_in_plain_peft(tiny_lm_dir, tmp_path):
    from peft import PeftModel

    model = _randomised(LoraMethod(r=4).apply(load_lm(str(tiny_lm_dir), device=CPU)[0])).eval()
    with peft_forward(model):
        plain_keys = model.state_dict().keys()
    assert model.state_dict().keys() == plain_keys
    x = _embeds(model)
    with torch.no_grad():
        expected = _logits(model, x)
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(load_lm(str(tiny_lm_dir), device=CPU)[0], tmp_path / "adapter").eval()
    assert not any("forward" in vars(m) for m in reloaded.modules())  # plain peft
    with torch.no_grad():
        torch.testing.assert_close(_logits(reloaded, x), expected, **TOL)


def test_dora_layers_keep_pefts_forward(tiny_lm_dir):
    model = DoraMethod(r=2, dropout=0.1).apply(load_lm(str(tiny_lm_dir), device=CPU)[0])
    assert not any("forward" in vars(m) for m in model.modules())
    assert use_fused_lora(model) == 0


def test_merged_disabled_and_mixed_batch_layers_fall_back_to_peft():
    torch.manual_seed(0)
    model = _wrapped(torch.nn.Linear(16, 12)).eval()
    use_fused_lora(model)
    x = torch.randn(4, 16)
    with torch.no_grad():
        adapted = model(x)
        with model.disable_adapter():
            torch.testing.assert_close(model(x), model.base_model.model.lin.base_layer(x))
        model.merge_adapter()
        torch.testing.assert_close(model(x), adapted, **TOL)
        model.unmerge_adapter()
        torch.testing.assert_close(model(x, adapter_names=["default"] * 4), adapted, **TOL)


def test_bf16_base_with_float32_adapter_rounds_as_peft_does():
    torch.manual_seed(0)
    model = _wrapped(torch.nn.Linear(16, 12))
    model.base_model.model.lin.base_layer.to(torch.bfloat16)
    use_fused_lora(model)
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    # No autocast: peft casts x to float32, sums in float32 and rounds once to bf16, as the fused add does.
    _assert_fused_equals_peft(model, x, train=True)
    with torch.no_grad():
        fused = model.eval()(x)
        with peft_forward(model):
            assert torch.equal(fused, model(x))


@pytest.mark.parametrize("casts", [True, False], ids=["input-cast", "no-input-cast"])
def test_bf16_autocast_matches_peft_to_bf16_rounding(casts):
    # The project's bf16 training (pipelines/train_setup.py): a bf16 base, float32 adapters,
    # autocast, and peft's input casts off. Every matmul is in bf16; only the order of the
    # roundings differs, so the tolerance is bf16's.
    torch.manual_seed(0)
    model = _wrapped(torch.nn.Linear(64, 48))
    model.base_model.model.lin.base_layer.to(torch.bfloat16)
    model.base_model.model.lin.cast_input_dtype_enabled = casts
    use_fused_lora(model)

    def autocast(m, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        assert out.dtype == torch.bfloat16
        return out

    _assert_fused_equals_peft(model, torch.randn(2, 8, 64), True, autocast, rtol=2e-2, atol=2e-2)


def test_backward_keeps_no_dropped_out_copy_of_the_input():
    """peft keeps dropout(x) for lora_A's weight gradient; the fused op recomputes it from x and
    the 1-byte mask. Counted with saved-tensor hooks: float tensors of x's size, other than x."""
    torch.manual_seed(0)
    model = _wrapped(torch.nn.Linear(64, 256)).train()
    x = torch.randn(32, 64, requires_grad=True)
    kept_anyway = {x.data_ptr(), model.base_model.model.lin.base_layer.weight.data_ptr()}

    def full_size_copies():
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            model(x)
        return sum(t.dtype.is_floating_point and t.numel() >= x.numel() and t.data_ptr() not in kept_anyway
                   for t in saved)

    with peft_forward(model):
        assert full_size_copies() == 1
    use_fused_lora(model)
    assert full_size_copies() == 0
