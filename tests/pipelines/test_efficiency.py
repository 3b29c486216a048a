import torch

from pipelines.efficiency import linear_macs, mfu, peak_flops, training_flops_per_token
from pipelines.methods import LoraMethod


def toy():
    return torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def test_flops_hand_checked():
    model = toy()
    # linear MACs: 4*8 + 8*2 = 48 -> forward 96 FLOPs/token; the embedding does no matmul work.
    assert linear_macs(model) == 48
    assert training_flops_per_token(model, seq_len=100) == 3 * 96  # full: fwd + 2x fwd backward
    model[1].requires_grad_(False)
    model[0].requires_grad_(False)
    trainable = 8 * 2 + 2  # the last layer's weight and bias
    assert training_flops_per_token(model, seq_len=100) == 2 * 96 + 2 * trainable
    assert mfu(tokens_per_s=100, flops_per_token=288, peak_flops=28_800) == 1.0


def test_peft_layers_are_counted_once(tiny_lm):
    model, _ = tiny_lm
    base = linear_macs(model)
    lora = LoraMethod(r=2).apply(model)
    adapters = sum(m.in_features * m.out_features for n, m in lora.named_modules()
                   if isinstance(m, torch.nn.Linear) and ("lora_A" in n or "lora_B" in n))
    assert linear_macs(lora) == base + adapters


def test_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path))
    shapes = ((64, 64, 64), (128, 32, 64))
    first = peak_flops(torch.device("cpu"), shapes=shapes, seconds=0.05)
    assert first > 1e6 and (tmp_path / "peak_flops.json").is_file()
    assert peak_flops(torch.device("cpu"), shapes=shapes, seconds=0.05) == first
