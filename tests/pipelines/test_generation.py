"""Generation: the greedy loop that drops finished rows gives `model.generate`'s tokens while
computing fewer row-steps; the prefill's padding is measured; beam search, encoder-decoders and
what the loop cannot reproduce still run through `model.generate`."""
from types import SimpleNamespace

import pytest
import torch

import pipelines.generation
from pipelines.generation import generate_ids

PAD = 0
VOCAB = 64
MAX_NEW = 12
LENGTHS = (3, 9, 5, 12, 7, 4, 10, 6)  # left padding in every batch


def tiny_decoder(family: str):
    """A 2-layer random decoder whose greedy continuations vary from token to token: the shared
    fixture's model writes one token forever, where no end token would fall at different steps."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2, pad_token_id=PAD,
                  eos_token_id=1, bos_token_id=None)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**common)).eval()
    # A window shorter than the prompts: the cache layers are sliding ones, compacted too.
    return MistralForCausalLM(MistralConfig(**common, sliding_window=4)).eval()


def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(2, VOCAB, (n,), generator=g).tolist() for n in LENGTHS]


def one_at_a_time(model, prompt: list[int], eos: int | None, **kwargs) -> list[int]:
    """HF's own generation of one unpadded prompt, cut at the end token as `generate_ids` cuts."""
    out = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=eos, pad_token_id=PAD, **kwargs)
    new = out[0, 1:].tolist() if model.config.is_encoder_decoder else out[0, len(prompt):].tolist()
    return new[: new.index(eos)] if eos in new else new


def end_token_at_varied_steps(continuations: list[list[int]]) -> int:
    """The token that, made the end token, ends the rows at the most different steps while some
    row never writes it (so that row runs to MAX_NEW and the others leave before it)."""
    def ends(token):
        return {c.index(token) for c in continuations if token in c}

    candidates = sorted(t for c in continuations for t in set(c)
                        if t != PAD and any(t not in other for other in continuations))
    return max(candidates, key=lambda t: len(ends(t)))


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_rows_leave_the_batch_and_the_tokens_are_generates_one_at_a_time(family):
    model = tiny_decoder(family)
    batch = prompts()
    eos = end_token_at_varied_steps([one_at_a_time(model, p, None) for p in batch])
    expected = [one_at_a_time(model, p, eos) for p in batch]
    written = [len(e) + 1 if len(e) < MAX_NEW else MAX_NEW for e in expected]  # the end token included
    assert len({n for n in written if n < MAX_NEW}) >= 3 and max(written) == MAX_NEW  # rows leave at 3+ steps

    tokenizer = SimpleNamespace(eos_token_id=eos, pad_token_id=PAD)
    stats = {}
    assert generate_ids(model, tokenizer, batch, MAX_NEW, batch_size=len(batch), stats=stats) == expected
    assert stats["decode_row_steps"] == sum(n - 1 for n in written)
    assert stats["decode_row_steps_without_compaction"] == len(batch) * (MAX_NEW - 1)
    assert stats["decode_row_steps"] < stats["decode_row_steps_without_compaction"]
    assert generate_ids(model, tokenizer, batch, MAX_NEW, batch_size=3) == expected  # several batches


def test_prefill_padding_share_counts_the_sorted_batches_as_padded():
    model = tiny_decoder("llama")
    tokenizer = SimpleNamespace(eos_token_id=1, pad_token_id=PAD)
    # Lengths 6, 2, 5, 3 in batches of 2, sorted: (2, 3) padded to 3 and (5, 6) padded to 6.
    batch = [[5] * 6, [6] * 2, [7] * 5, [8] * 3]
    stats = {}
    generate_ids(model, tokenizer, batch, max_new_tokens=1, batch_size=2, stats=stats)
    assert stats["prefill_tokens"] == 2 * 3 + 2 * 6
    assert stats["prefill_padding_share"] == pytest.approx((1 + 1) / 18)
    assert stats["decode_row_steps"] == stats["decode_row_steps_without_compaction"] == 0  # one token: no decode step


def test_beam_search_is_generates():
    model = tiny_decoder("llama")
    batch = prompts()
    tokenizer = SimpleNamespace(eos_token_id=1, pad_token_id=PAD)
    stats = {}
    got = generate_ids(model, tokenizer, batch, MAX_NEW, batch_size=4, num_beams=2, stats=stats)
    assert got == [one_at_a_time(model, p, 1, num_beams=2) for p in batch]
    assert stats["decode_row_steps"] == stats["decode_row_steps_without_compaction"] > 0


def test_encoder_decoder_is_generates(tiny_seq2seq_dir):
    from pipelines.sources.models import load_lm

    model, tokenizer, _ = load_lm(str(tiny_seq2seq_dir))
    batch = [tokenizer(f"Dialogue number {n}: " + "hello there " * n, add_special_tokens=False)["input_ids"]
             for n in (1, 4, 2)]
    got = generate_ids(model, tokenizer, batch, MAX_NEW, batch_size=3)
    assert got == [one_at_a_time(model, p, tokenizer.eos_token_id) for p in batch]


@pytest.mark.parametrize("reason", ["repetition_penalty", "uncompactable cache"])
def test_what_the_loop_cannot_reproduce_runs_through_generate(reason, monkeypatch):
    model = tiny_decoder("llama")
    batch = prompts()
    eos = end_token_at_varied_steps([one_at_a_time(model, p, None) for p in batch])
    if reason == "repetition_penalty":  # a logits processor in the model's own generation config
        model.generation_config.repetition_penalty = 1.3
    else:
        monkeypatch.setattr(pipelines.generation, "_compactable_cache", lambda model: None)
    stats = {}
    got = generate_ids(model, SimpleNamespace(eos_token_id=eos, pad_token_id=PAD), batch, MAX_NEW,
                       batch_size=len(batch), stats=stats)
    assert got == [one_at_a_time(model, p, eos) for p in batch]
    assert stats["decode_row_steps"] == stats["decode_row_steps_without_compaction"]
