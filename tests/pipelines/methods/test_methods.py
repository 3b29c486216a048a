import pytest
import torch

from pipelines.errors import PlatformError
from pipelines.methods import BaseMethod, FullMethod, LoraMethod
from pipelines.resources import bytes_on_disk, parameter_counts


def test_base_trains_nothing_and_full_trains_everything(tiny_lm):
    model, _ = tiny_lm
    total = parameter_counts(model)["params_total"]
    assert BaseMethod().trains is False and BaseMethod().apply(model) is model
    assert parameter_counts(model) == {"params_total": total, "params_trainable": 0}
    full = FullMethod().apply(model)
    counts = parameter_counts(full)
    assert counts["params_trainable"] == counts["params_total"]


def test_lora_finds_linear_layers_itself_and_trains_a_small_share(tiny_lm):
    model, _ = tiny_lm
    total_before = parameter_counts(model)["params_total"]
    peft_model = LoraMethod(r=2).apply(model)
    counts = parameter_counts(peft_model)
    adapted = {name.split(".")[-2] for name, _ in peft_model.named_parameters() if "lora_A" in name}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= {
        n.split(".")[-3] for n, _ in peft_model.named_parameters() if "lora_A" in n} or adapted
    assert "lm_head" not in str(adapted)
    assert 0 < counts["params_trainable"] < 0.2 * total_before


def test_lora_adapter_reloads_to_the_same_outputs(tiny_lm_dir, tmp_path):
    from peft import PeftModel

    from pipelines.sources.models import load_lm

    model, _, _ = load_lm(str(tiny_lm_dir))
    torch.manual_seed(0)
    peft_model = LoraMethod(r=4).apply(model)
    with torch.no_grad():  # make the adapter non-zero, as training would
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.eval()
    ids = torch.tensor([[3, 10, 20, 30, 40]])
    expected = peft_model(input_ids=ids).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    assert bytes_on_disk(tmp_path / "adapter") < bytes_on_disk(tiny_lm_dir / "model.safetensors")
    base, _, _ = load_lm(str(tiny_lm_dir))
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    torch.testing.assert_close(reloaded(input_ids=ids).logits, expected)
    merged = reloaded.merge_and_unload()
    torch.testing.assert_close(merged(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-4)


def test_lora_with_missing_target_modules_fails_clearly(tiny_lm):
    model, _ = tiny_lm
    with pytest.raises(PlatformError, match="lora cannot apply to LlamaForCausalLM: .*not_a_layer"):
        LoraMethod(target_modules=["not_a_layer"]).apply(model)
