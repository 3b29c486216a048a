"""Every PEFT method trains a few steps on a tiny random model, and its saved adapter reloads
to the same outputs."""
import pytest
import torch

from pipelines.config import TrainSettings
from pipelines.methods import DoraMethod, Ia3Method, LoraMethod, PrefixMethod, PromptMethod, QloraMethod
from pipelines.resources import bytes_on_disk, parameter_counts
from pipelines.sources.models import load_lm
from pipelines.tasks.summarization import collate, encode_for_training, generate_summaries, summary_loss
from pipelines.train import train
from tests.conftest import DIALOGUES

INSTRUCTION = "Summarize the following dialogue in one or two sentences."
CPU = torch.device("cpu")
PEFT_METHODS = [
    LoraMethod(r=2, learning_rate=1e-2),
    DoraMethod(r=2, learning_rate=1e-2),
    QloraMethod(r=2, learning_rate=1e-2),
    Ia3Method(learning_rate=1e-2),
    PrefixMethod(num_virtual_tokens=4, learning_rate=1e-2),
    PromptMethod(num_virtual_tokens=4, learning_rate=1e-2),
]


@pytest.mark.parametrize("method", PEFT_METHODS, ids=lambda m: m.name)
def test_method_trains_and_its_adapter_reloads_to_the_same_outputs(method, tiny_lm_dir, tmp_path):
    from peft import PeftModel

    torch.manual_seed(0)
    model, tokenizer, _ = load_lm(str(tiny_lm_dir), device=CPU, **method.load_kwargs(CPU))
    model = method.apply(model)
    counts = parameter_counts(model)
    assert 0 < counts["params_trainable"] < counts["params_total"]
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad and p.dtype.is_floating_point}

    data = [encode_for_training(tokenizer, INSTRUCTION, d, s, 256, 32) for d, s in DIALOGUES]
    logged = []
    train(model, data, TrainSettings(max_steps=4, batch_size=4, log_every=1), collate=collate, loss=summary_loss, learning_rate=method.learning_rate,
          weight_decay=0.0, seed=0, pad_id=tokenizer.pad_token_id, device=CPU,
          log=lambda m, step: logged.append(m["train_loss"]))
    assert len(logged) == 4 and all(torch.isfinite(torch.tensor(logged)))
    for name, param in model.named_parameters():  # training touched the adapter only
        if name in frozen_before:
            assert torch.equal(param, frozen_before[name]), name

    model.eval()
    ids = tokenizer(DIALOGUES[0][0], return_tensors="pt")
    with torch.no_grad():
        expected = model(**ids).logits
    model.save_pretrained(tmp_path / "adapter")
    assert bytes_on_disk(tmp_path / "adapter") < bytes_on_disk(tiny_lm_dir / "model.safetensors")

    base, _, _ = load_lm(str(tiny_lm_dir), device=CPU, **method.load_kwargs(CPU))
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**ids).logits, expected)
    summaries = generate_summaries(reloaded, tokenizer, INSTRUCTION, [d for d, _ in DIALOGUES[:3]], 4, 2)
    assert len(summaries) == 3


@pytest.mark.parametrize("method", [LoraMethod(target_modules=["nope"]), DoraMethod(target_modules=["nope"]),
                                    QloraMethod(target_modules=["nope"]), Ia3Method(target_modules=["nope"])],
                         ids=lambda m: m.name)
def test_missing_target_modules_fail_with_the_method_named(method, tiny_lm_dir):
    from pipelines.errors import PlatformError

    model, _, _ = load_lm(str(tiny_lm_dir), device=CPU, **method.load_kwargs(CPU))
    with pytest.raises(PlatformError, match=f"^{method.name} cannot apply to LlamaForCausalLM: .*nope"):
        method.apply(model)


def test_dora_eval_cache_never_serves_stale_weights(tiny_lm_dir):
    from peft.helpers import DoraCaching

    torch.manual_seed(0)
    model, tokenizer, _ = load_lm(str(tiny_lm_dir), device=CPU)
    model = DoraMethod(r=2, learning_rate=5e-2).apply(model)  # enables peft's eval-mode DoRA cache
    assert DoraMethod().dropout == 0.0
    data = [encode_for_training(tokenizer, INSTRUCTION, d, s, 256, 32) for d, s in DIALOGUES]
    ids = tokenizer(DIALOGUES[0][0], return_tensors="pt")
    settings = TrainSettings(max_steps=2, batch_size=4, log_every=10)
    outputs = []
    for _ in range(2):  # train, score with the cache filled, then train again
        train(model, data, settings, collate=collate, loss=summary_loss, learning_rate=5e-2, weight_decay=0.0, seed=0, pad_id=tokenizer.pad_token_id,
              device=CPU)
        model.eval()
        with torch.no_grad():
            cached = model(**ids).logits
            with DoraCaching(enabled=False):
                fresh = model(**ids).logits
        torch.testing.assert_close(cached, fresh)
        outputs.append(cached)
    assert not torch.allclose(outputs[0], outputs[1])  # the second round's cache saw the new weights
