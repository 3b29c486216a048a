"""Batched, length-sorted, KV-cached generation from token ids, shared by every generating task
and by the servable models.

Prompts are sorted by length and left-padded per batch, so the prefill computes little padding
(`stats["prefill_padding_share"]` says how much). Greedy decoding of a decoder-only model runs in
our own loop over transformers' `DynamicCache`: a row that has emitted the end token leaves the
batch (its input, mask, positions and every cache layer's keys/values are dropped with
`index_select`), so each step computes only the rows still writing. `model.generate` keeps the
rest (beam search, encoder-decoders, caches or generation settings the loop cannot reproduce).
The loop is HF's greedy search step for step: positions from the mask (cumsum - 1), an all-ones
mask dropped as HF drops it, `logits_to_keep=1`, argmax of the last logits; so its tokens are
`model.generate`'s."""
from __future__ import annotations

import inspect

import torch

# Generation-config fields under which HF's greedy search is no longer a plain argmax over the
# logits (logits processors, extra stopping criteria): with any set, `model.generate` runs.
# The value each takes when it changes nothing (None always does).
_GREEDY_CHANGERS = {
    "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": 0, "guidance_scale": 1.0,
    "remove_invalid_values": False, "bad_words_ids": None, "sequence_bias": None, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "exponential_decay_length_penalty": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "stop_strings": None, "max_time": None, "watermarking_config": None,
    "prefill_chunk_size": None,
}


@torch.inference_mode()
def generate_ids(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                 num_beams: int = 1, progress=None, stats: dict | None = None) -> list[list[int]]:
    """New token ids per prompt (the end token and what follows it dropped).

    `stats`, if given, receives what the generation cost: `prefill_tokens` (prompt token slots as
    padded), `prefill_padding_share` (the padding among them), `decode_row_steps` (rows times
    forward passes after the one that gave each row its first token) and
    `decode_row_steps_without_compaction` (the same had every row stayed until its batch's longest
    ended, as in `model.generate`; for beam search, beams times rows times the returned length)."""
    device = next(model.parameters()).device
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    compacting = num_beams == 1 and max_new_tokens > 0 and _loop_reproduces_generate(model, eos_id)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[list[int]] = [[] for _ in prompts]
    totals = dict.fromkeys(("prefill_tokens", "prefill_padding", "decode_row_steps",
                            "decode_row_steps_without_compaction"), 0)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask = _left_padded([prompts[i] for i in idx], pad_id, device)
        totals["prefill_tokens"] += mask.numel()
        totals["prefill_padding"] += mask.numel() - sum(len(prompts[i]) for i in idx)
        written = _greedy_compacted(model, ids, mask, max_new_tokens, eos_id) if compacting else None
        compacted = written is not None
        if not compacted:  # also when the model did not fill the cache the loop handed it
            written = _generate(model, ids, mask, max_new_tokens, num_beams, pad_id, eos_id)
        compacting = compacted  # a model that ignored the loop's cache once does not get it again
        lengths = [len(w) for w in written]  # tokens written per row, the end token included
        uncompacted = len(idx) * max(max(lengths) - 1, 0) * num_beams
        totals["decode_row_steps_without_compaction"] += uncompacted
        totals["decode_row_steps"] += sum(max(n - 1, 0) for n in lengths) if compacted else uncompacted
        for i, new in zip(idx, written):
            outputs[i] = new[: new.index(eos_id)] if eos_id in new else new
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    model.train(was_training)
    if stats is not None:
        padding = totals.pop("prefill_padding")
        stats.update(totals, prefill_padding_share=padding / max(totals["prefill_tokens"], 1))
    return outputs


def _left_padded(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, padded on the left so every row's last token is the last column."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for row, prompt in enumerate(rows):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long, device=device)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def _loop_reproduces_generate(model, eos_id) -> bool:
    """Whether our greedy loop computes what `model.generate` would, on this model.

    Encoder-decoders stay with `generate`: their decoder prompt is one start token, so rows share
    their length and only the decode would compact, through an `EncoderDecoderCache` whose cross-
    attention half must shrink too; not worth its code for T5/BART-sized summaries. Prompt-learning
    PEFT adds virtual tokens or a prefix cache in its own `generate`. A model whose forward takes no
    `position_ids` would need positions of its own kind. Without an end token, `generate` falls
    back on the generation config's: kept there rather than guessed here."""
    if eos_id is None or getattr(model.config, "is_encoder_decoder", False):
        return False
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "position_ids" not in inspect.signature(base.forward).parameters:
        return False
    config = getattr(base, "generation_config", None)
    if config is None:  # `generate` would use the defaults, which the loop reproduces
        return True
    if config.cache_implementation not in (None, "dynamic"):
        return False
    return all(getattr(config, name, None) in (None, neutral) for name, neutral in _GREEDY_CHANGERS.items())


def _compactable_cache(model):
    """A fresh `DynamicCache` for the model, or None if some layer of it holds more per row than
    keys and values (linear-attention states, an indexer, shared-KV placeholders, quantized
    blocks): dropping rows from those would need each one's own bookkeeping, so `generate` runs."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cache = DynamicCache(config=base.config.get_text_config(decoder=True))
    # A sliding layer's other state (window, tokens seen) is the same for every row.
    kv_only = all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)
    return cache if kv_only and cache.layer_class_to_replicate in (None, DynamicLayer) else None


def _greedy_compacted(model, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                      eos_id: int) -> list[list[int]] | None:
    """Greedy tokens per row, the end token included; a row leaves the batch once it has written
    it. None if the cache cannot be compacted (then nothing was computed) or the model did not
    write into it (then only the prefill was)."""
    cache = _compactable_cache(model)
    if cache is None:
        return None
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    # As HF does: with no padding there is no mask, and so none for the whole decode either.
    attention = None if bool(mask.all()) else mask
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    keep_logits = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}
    out = model(input_ids=ids, attention_mask=attention, position_ids=positions, past_key_values=cache,
                use_cache=True, **keep_logits)
    if out.past_key_values is not cache:
        return None
    written: list[list[int]] = [[] for _ in range(ids.shape[0])]
    live = list(range(ids.shape[0]))  # the batch row each computed row writes for
    position = positions[:, -1:]
    for step in range(max_new_tokens):
        token = out.logits[:, -1].argmax(-1)
        kept = []
        for row, (owner, t) in enumerate(zip(live, token.tolist())):  # the one sync per step
            written[owner].append(t)
            if t != eos_id:
                kept.append(row)
        if not kept or step == max_new_tokens - 1:
            break
        if len(kept) < len(live):
            rows = torch.tensor(kept, dtype=torch.long, device=token.device)
            live, token, position = [live[r] for r in kept], token[rows], position[rows]
            attention = attention.index_select(0, rows) if attention is not None else None
            _drop_rows(cache, rows)
        position = position + 1
        if attention is not None:
            attention = torch.cat([attention, attention.new_ones((len(live), 1))], dim=-1)
        out = model(input_ids=token[:, None], attention_mask=attention, position_ids=position,
                    past_key_values=cache, use_cache=True)
    return written


def _drop_rows(cache, rows: torch.Tensor) -> None:
    """Keep only `rows` of every cache layer (layers a model leaves unfilled have no tensors)."""
    for layer in cache.layers:
        if layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys.index_select(0, rows.to(layer.keys.device))
            layer.values = layer.values.index_select(0, rows.to(layer.values.device))


def _generate(model, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, num_beams: int,
              pad_id: int, eos_id) -> list[list[int]]:
    """`model.generate`'s new tokens per row, up to and including the end token."""
    generated = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams,
        pad_token_id=pad_id, eos_token_id=eos_id, use_cache=True,
    )
    # A decoder-only model returns prompt + continuation; an encoder-decoder returns the decoder
    # start token + continuation.
    skip = 1 if getattr(model.config, "is_encoder_decoder", False) else ids.shape[1]
    written = []
    for new in generated[:, skip:].tolist():
        # Past the end token comes the padding of rows that finished before the batch's longest.
        written.append(new[: new.index(eos_id) + 1] if eos_id in new else new)
    return written
