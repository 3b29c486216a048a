"""The CPU adapter dropout behaves as nn.Dropout does: keep rate, scaling, gradient, eval mode,
reproducibility under torch.manual_seed; and LoRA/DoRA/QLoRA get it in place of peft's."""
import pytest
import torch

from pipelines.methods import DoraMethod, LoraMethod, QloraMethod
from pipelines.methods.adapter_dropout import AdapterDropout
from pipelines.sources.models import load_lm

CPU = torch.device("cpu")


def test_keeps_one_minus_p_and_scales_the_kept_values():
    x = torch.rand(200, 1000) + 0.5  # no zeros of its own
    out = AdapterDropout(0.2).train()(x)
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(0.8, abs=0.005)  # 200k draws: sd ~0.001
    torch.testing.assert_close(out[kept], x[kept] / 0.8)


def test_gradient_is_the_mask_times_the_scale():
    x = torch.randn(64, 128, requires_grad=True)
    out = AdapterDropout(0.3).train()(x)
    out.backward(torch.ones_like(out))
    torch.testing.assert_close(x.grad, (out != 0).float() / 0.7)


def test_identity_in_eval_mode_and_at_p_zero():
    x = torch.randn(8, 16)
    assert AdapterDropout(0.5).eval()(x) is x
    assert AdapterDropout(0.0).train()(x) is x


def test_masks_follow_torch_manual_seed_and_keep_the_dtype():
    x = torch.randn(32, 32, dtype=torch.bfloat16)
    drop = AdapterDropout(0.5).train()
    torch.manual_seed(3)
    first, second = drop(x), drop(x)
    torch.manual_seed(3)
    again = drop(x)
    assert first.dtype == torch.bfloat16
    assert torch.equal(first, again) and not torch.equal(first, second)


@pytest.mark.parametrize("method", [LoraMethod(r=2, dropout=0.1), DoraMethod(r=2, dropout=0.1),
                                    QloraMethod(r=2, dropout=0.1)], ids=lambda m: m.name)
def test_lora_methods_use_it_for_every_adapter(method, tiny_lm_dir):
    model, _, _ = load_lm(str(tiny_lm_dir), device=CPU, **method.load_kwargs(CPU))
    model = method.apply(model)
    adapted = [m for m in model.modules() if hasattr(m, "lora_dropout")]
    assert adapted and all(isinstance(m.lora_dropout["default"], AdapterDropout) for m in adapted)
    assert all(m.lora_dropout["default"].p == 0.1 for m in adapted)
