"""QLoRA is LoRA on a 4-bit base: peft's k-bit preparation, then LoRA's own apply (not a copy)."""
import torch

from pipelines.methods import LoraMethod, QloraMethod
from pipelines.methods.adapter_dropout import AdapterDropout
from pipelines.sources.models import load_lm

CPU = torch.device("cpu")


def _load(tiny_lm_dir, method):
    model, _, _ = load_lm(str(tiny_lm_dir), device=CPU, **method.load_kwargs(CPU))
    return model


def test_qlora_goes_through_loras_apply_on_a_prepared_4bit_base(tiny_lm_dir, monkeypatch):
    calls = []
    lora_apply = LoraMethod.apply

    def spy(self, model):  # stands for any step LoRA's apply gains later
        calls.append((self.name, model.is_loaded_in_4bit, any(p.requires_grad for p in model.parameters())))
        return lora_apply(self, model)

    monkeypatch.setattr(LoraMethod, "apply", spy)
    QloraMethod(r=2).apply(_load(tiny_lm_dir, QloraMethod()))
    assert calls == [("qlora", True, False)]  # once, on the 4-bit base that prepare_model_for_kbit_training froze


def test_qlora_adapts_what_lora_adapts(tiny_lm_dir):
    def adapted(model):
        trainable = {name: tuple(p.shape) for name, p in model.named_parameters() if p.requires_grad}
        dropouts = sorted(name for name, m in model.named_modules() if isinstance(m, AdapterDropout))
        return trainable, dropouts

    lora = LoraMethod(r=2).apply(_load(tiny_lm_dir, LoraMethod()))
    qlora = QloraMethod(r=2).apply(_load(tiny_lm_dir, QloraMethod()))
    assert adapted(qlora) == adapted(lora) and adapted(lora)[1]
