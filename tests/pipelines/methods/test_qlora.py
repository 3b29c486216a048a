"""QLoRA is LoRA on a 4-bit base: peft's k-bit preparation, then LoRA's own apply (not a copy);
and only QLoRA hears from bitsandbytes."""
import subprocess
import sys

import pytest
import torch

from pipelines.methods import LoraMethod, QloraMethod
from pipelines.methods.adapter_dropout import AdapterDropout
from pipelines.sources.models import load_lm
from tests.conftest import REPO

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


KERNELS_ADVICE = "Failed to load CPU gemm_4bit_forward"  # bitsandbytes, on import, on an AVX512-BF16 CPU
APPLY_LORA = """
import sys
from pipelines.methods import LoraMethod
from pipelines.sources.models import load_lm
LoraMethod(r=2).apply(load_lm(sys.argv[1])[0])
"""
QLORA_LOAD_KWARGS = """
import torch
from pipelines.methods import QloraMethod
QloraMethod().load_kwargs(torch.device("cpu"))
"""


def _stderr_of(code: str, *args: str) -> str:
    # A fresh interpreter: bitsandbytes speaks once per process, at its first import.
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_only_qlora_shows_bitsandbytes_cpu_kernel_advice(tiny_lm_dir):
    if KERNELS_ADVICE not in _stderr_of(QLORA_LOAD_KWARGS):
        pytest.skip("bitsandbytes gives no CPU kernel advice here (no AVX512-BF16, or `kernels` installed)")
    # LoRA imports bitsandbytes too (peft does, whenever it is installed), but must not print its advice.
    assert KERNELS_ADVICE not in _stderr_of(APPLY_LORA, str(tiny_lm_dir))
