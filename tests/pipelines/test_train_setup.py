"""The training-only set-up: a bf16 frozen base for adapters (restored afterwards, adapter still
float32 and reloadable), gradient checkpointing with the same loss and gradients as without."""
import pytest
import torch

from pipelines.config import TrainSettings
from pipelines.errors import PlatformError
from pipelines.methods import (
    DoraMethod,
    FullMethod,
    Ia3Method,
    LoraMethod,
    PrefixMethod,
    PromptMethod,
    QloraMethod,
)
from pipelines.sources.models import load_lm
from pipelines.tasks.summarization import collate, encode_for_training, summary_loss
from pipelines.train import train
from pipelines.train_setup import prepared_for_training
from tests.conftest import DIALOGUES

INSTRUCTION = "Summarize the following dialogue in one or two sentences."
CPU = torch.device("cpu")
BF16 = torch.bfloat16


def encoded(tokenizer):
    return [encode_for_training(tokenizer, INSTRUCTION, d, s, 256, 32) for d, s in DIALOGUES]


@pytest.mark.parametrize("method", [LoraMethod(r=2, learning_rate=1e-2), DoraMethod(r=2, learning_rate=1e-2),
                                    Ia3Method(learning_rate=1e-2), PrefixMethod(num_virtual_tokens=4, learning_rate=1e-2),
                                    PromptMethod(num_virtual_tokens=4, learning_rate=1e-2),
                                    QloraMethod(r=2, learning_rate=1e-2)], ids=lambda m: m.name)
def test_adapter_trains_on_a_bf16_base_and_its_float32_adapter_reloads(method, tiny_lm_dir, tmp_path):
    from peft import PeftModel

    torch.manual_seed(0)
    model, tokenizer, _ = load_lm(str(tiny_lm_dir), device=CPU, **method.load_kwargs(CPU))
    model = method.apply(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    logged = []
    with prepared_for_training(model, TrainSettings(), BF16):
        dtypes = {n: p.dtype for n, p in model.named_parameters()}
        # Floating-point frozen weights go to bf16; QLoRA's 4-bit ones stay as they are.
        assert all(dtypes[n] == (BF16 if frozen[n].is_floating_point() else frozen[n].dtype) for n in frozen)
        assert all(dtypes[n] == torch.float32 for n in trainable_before)
        train(model, encoded(tokenizer), TrainSettings(max_steps=3, batch_size=4, log_every=1),
              collate=collate, loss=summary_loss, learning_rate=method.learning_rate, weight_decay=0.0, seed=0, pad_id=tokenizer.pad_token_id,
              device=CPU, amp_dtype=BF16, log=lambda m, step: logged.append(m["train_loss"]))
    assert len(logged) == 3 and all(torch.isfinite(torch.tensor(logged)))
    for name, param in model.named_parameters():
        if name in frozen:  # the base is back as loaded, bit for bit
            assert param.dtype == frozen[name].dtype and torch.equal(param, frozen[name]), name
        else:
            assert param.dtype == torch.float32 and not torch.equal(param, trainable_before[name]), name

    model.eval()
    ids = tokenizer(DIALOGUES[0][0], return_tensors="pt")
    with torch.no_grad():
        expected = model(**ids).logits
    model.save_pretrained(tmp_path / "adapter")
    base, _, _ = load_lm(str(tiny_lm_dir), device=CPU, **method.load_kwargs(CPU))
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**ids).logits, expected)


def test_full_fine_tuning_keeps_float32_master_weights(tiny_lm_dir):
    model, _, _ = load_lm(str(tiny_lm_dir))
    model = FullMethod().apply(model)
    with prepared_for_training(model, TrainSettings(), BF16):
        assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_no_autocast_leaves_the_base_in_float32(tiny_lm_dir):
    model, _, _ = load_lm(str(tiny_lm_dir))
    model = LoraMethod(r=2).apply(model)
    with prepared_for_training(model, TrainSettings(), None):
        assert {p.dtype for p in model.parameters()} == {torch.float32}


def loss_and_grads(model_dir, checkpointing: bool, share: float = 1.0):
    from transformers.modeling_layers import GradientCheckpointingLayer

    torch.manual_seed(0)
    model, tokenizer, _ = load_lm(str(model_dir))
    model = LoraMethod(r=2, dropout=0.1).apply(model)
    torch.nn.init.normal_(model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight)
    batch = collate(encoded(tokenizer)[:4], tokenizer.pad_token_id)
    model.train()
    settings = TrainSettings(gradient_checkpointing=checkpointing, checkpointed_layers=share)
    with prepared_for_training(model, settings, None):
        assert model.is_gradient_checkpointing == checkpointing
        layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        assert sum(m.gradient_checkpointing for m in layers) == (round(len(layers) * share) if checkpointing else 0)
        torch.manual_seed(1)  # the same dropout masks in both runs (checkpointing replays the RNG state)
        loss = summary_loss(model, batch)
        loss.backward()
    assert not model.is_gradient_checkpointing  # switched off again after training
    return loss.item(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("share", [1.0, 0.5], ids=["every layer", "selective: half the layers"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_lm_dir, share):
    loss, grads = loss_and_grads(tiny_lm_dir, checkpointing=False)
    loss_ckpt, grads_ckpt = loss_and_grads(tiny_lm_dir, checkpointing=True, share=share)
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == grads_ckpt.keys() and any(g.abs().sum() > 0 for g in grads.values())
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-5, atol=1e-7)


def test_checkpointing_a_model_that_cannot_fails_with_the_setting_named():
    model = torch.nn.Linear(2, 2)
    with (pytest.raises(PlatformError, match="^train.gradient_checkpointing: Linear does not support it"),
          prepared_for_training(model, TrainSettings(gradient_checkpointing=True), None)):
        pass


def test_qlora_checkpoints_by_default_and_leaves_budget_and_batch_alone(tiny_lm_dir):
    settings = TrainSettings(max_steps=3, batch_size=2)
    recipe = QloraMethod().train_settings(settings)
    assert recipe.gradient_checkpointing and not settings.gradient_checkpointing  # the grid's settings untouched
    assert recipe.model_dump(exclude={"gradient_checkpointing"}) == settings.model_dump(exclude={"gradient_checkpointing"})
    assert QloraMethod(gradient_checkpointing=False).train_settings(settings) is settings
    assert LoraMethod().train_settings(settings) is settings

    method = QloraMethod(r=2, learning_rate=1e-2)
    model, tokenizer, _ = load_lm(str(tiny_lm_dir), device=CPU, **method.load_kwargs(CPU))
    model = method.apply(model)
    seen = []
    with prepared_for_training(model, method.train_settings(settings), None):
        seen.append(model.is_gradient_checkpointing)
        fit = train(model, encoded(tokenizer), settings, collate=collate, loss=summary_loss, learning_rate=1e-2, weight_decay=0.0, seed=0,
                    pad_id=tokenizer.pad_token_id, device=CPU)
    assert seen == [True] and fit.steps == 3 and not model.is_gradient_checkpointing
