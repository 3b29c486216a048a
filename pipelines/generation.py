"""Batched, length-sorted, KV-cached generation from token ids, shared by every generating task
and by the servable models."""
from __future__ import annotations

import torch


@torch.inference_mode()
def generate_ids(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                 num_beams: int = 1, progress=None) -> list[list[int]]:
    """New token ids per prompt: batches sorted by length (little padding), left padding, KV cache."""
    device = next(model.parameters()).device
    # A decoder-only model returns prompt + continuation; an encoder-decoder returns the decoder
    # start token + continuation.
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(prompts[i])
            ids[row, width - n :] = torch.tensor(prompts[i])
            mask[row, width - n :] = 1
        generated = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
            do_sample=False, num_beams=num_beams, pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
        )
        for row, i in enumerate(idx):
            new = generated[row, 1:].tolist() if seq2seq else generated[row, width:].tolist()
            # Drop what follows the end token (padding of sequences that finished early).
            if tokenizer.eos_token_id in new:
                new = new[: new.index(tokenizer.eos_token_id)]
            outputs[i] = new
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    model.train(was_training)
    return outputs
