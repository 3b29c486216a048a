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


def test_the_output_head_counts_only_where_it_runs(tiny_lm):
    from pipelines.efficiency import attention_flops_per_token, head_macs

    model, _ = tiny_lm
    vocab = model.config.vocab_size
    # Hand count for the fixture's llama (hidden 64, 4 heads of 16, 2 kv heads, mlp 128, 2 layers):
    # q 64x64 + k 64x32 + v 64x32 + o 64x64 + gate, up, down 3 x 64x128 = 36,864 MACs per layer.
    assert head_macs(model) == 64 * vocab
    assert linear_macs(model) == 2 * 36_864 + 64 * vocab
    assert attention_flops_per_token(model, seq_len=10) == 4 * 2 * 64 * 10
    full = 3 * (2 * (2 * 36_864 + 64 * vocab) + 4 * 2 * 64 * 10)
    assert training_flops_per_token(model, seq_len=10) == full
    quarter = 3 * (2 * (2 * 36_864 + 0.25 * 64 * vocab) + 4 * 2 * 64 * 10)
    assert training_flops_per_token(model, seq_len=10, head_share=0.25) == quarter
    # A frozen base with LoRA r=2 on q only: 4x the frozen work + 6x the adapter's (+ 2x attention).
    lora = LoraMethod(r=2, target_modules=["q_proj"]).apply(model)
    adapter = 2 * (64 * 2 + 2 * 64)  # two layers, A: 64->2, B: 2->64 (MACs per token = parameters)
    expected = 4 * (2 * 36_864 + 0.25 * 64 * vocab) + 6 * adapter + 2 * (4 * 2 * 64 * 10)
    assert training_flops_per_token(lora, seq_len=10, head_share=0.25) == expected


def test_peak_skips_shapes_too_slow_for_the_time_budget(tmp_path, monkeypatch):
    """A dtype the hardware cannot run fast (bf16 on a CPU without AMX) must not hang the first
    run of a pipeline on products that take minutes each."""
    import pipelines.efficiency as efficiency

    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path))
    measured = []
    real = efficiency._matmul_rate
    monkeypatch.setattr(efficiency, "_matmul_rate",
                        lambda device, dtype, shape, seconds: measured.append(shape) or real(device, dtype, shape, seconds))
    huge, small = (16384, 16384, 16384), (64, 64, 64)  # 8.8 TFLOP: far beyond 0.05 s anywhere here
    assert peak_flops(torch.device("cpu"), shapes=(huge, small), seconds=0.05) > 1e6
    assert measured == [efficiency.PROBE_SHAPE, small]


def test_a_cached_peak_below_the_one_for_fewer_threads_is_measured_again(tmp_path, monkeypatch):
    """Two processes measuring at once once cached 2 GFLOP/s for two threads against 66 for one:
    every MFU after it read 48x too high."""
    import json

    import pipelines.efficiency as efficiency

    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        key = efficiency._machine_key(torch.device("cpu"), torch.float32)
        one_thread = key.replace("threads=2", "threads=1")
        (tmp_path / "peak_flops.json").write_text(json.dumps({key: 2e9, one_thread: 66e9}))
        monkeypatch.setattr(efficiency, "_matmul_rate", lambda device, dtype, shape, seconds: 120e9)
        assert peak_flops(torch.device("cpu"), shapes=((64, 64, 64),)) == 120e9
        assert json.loads((tmp_path / "peak_flops.json").read_text())[key] == 120e9
    finally:
        torch.set_num_threads(threads)
