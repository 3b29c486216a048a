import torch

from pipelines.runtime import autocast_dtype, cpu_has_fast_bf16

CPU = torch.device("cpu")


def test_auto_precision_is_bf16_on_cpus_with_amx_and_float32_elsewhere(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True, "avx512_bf16": True})
    assert cpu_has_fast_bf16() and autocast_dtype("auto", CPU) == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False, "avx512_bf16": True})
    assert not cpu_has_fast_bf16() and autocast_dtype("auto", CPU) is None


def test_explicit_precision_wins_over_the_hardware(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
    assert autocast_dtype("float32", CPU) is None
    monkeypatch.setattr(torch.cpu, "get_capabilities", dict)
    assert autocast_dtype("bfloat16", CPU) == torch.bfloat16
