"""Summarization on a causal LM: prompt format, loss only on the summary, batched generation."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


def build_prompt(tokenizer, instruction: str, dialogue: str) -> str:
    """The text the model continues with its summary: the chat template when the tokenizer has one."""
    content = f"{instruction}\n\n{dialogue}"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
    return f"{content}\n\nSummary:"


def _target_suffix(tokenizer) -> list[int]:
    # The summary must end the way the model should stop: with its end-of-sequence token.
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool


def encode_for_training(tokenizer, instruction: str, dialogue: str, summary: str, max_len: int, max_target: int) -> Encoded:
    """Prompt + summary token ids, with labels masked to the summary (and its end token).

    When the pair is longer than `max_len`, the dialogue is cut (not the instruction or the
    generation prompt), so the model still sees a well-formed prompt.
    """
    target = tokenizer(" " + summary.strip() if not getattr(tokenizer, "chat_template", None) else summary.strip(),
                       add_special_tokens=False)["input_ids"][:max_target] + _target_suffix(tokenizer)
    prompt = tokenizer(build_prompt(tokenizer, instruction, dialogue), add_special_tokens=False)["input_ids"]
    truncated = False
    if len(prompt) + len(target) > max_len:
        truncated = True
        overhead = len(tokenizer(build_prompt(tokenizer, instruction, ""), add_special_tokens=False)["input_ids"])
        budget = max(1, max_len - len(target) - overhead)
        dialogue_ids = tokenizer(dialogue, add_special_tokens=False)["input_ids"][:budget]
        cut = tokenizer.decode(dialogue_ids, skip_special_tokens=True)
        prompt = tokenizer(build_prompt(tokenizer, instruction, cut), add_special_tokens=False)["input_ids"]
        prompt = prompt[: max(1, max_len - len(target))]
    return Encoded(prompt + target, [IGNORE_INDEX] * len(prompt) + target, truncated)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions get no attention and no loss."""
    width = max(len(item.input_ids) for item in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, group: int = 32) -> list[list[int]]:
    """Shuffled batches of similar-length examples, so little compute goes to padding.

    Indices are shuffled, cut into groups of `group` batches, sorted by length inside a group,
    then the batches are shuffled: random order, short padding.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    span = batch_size * group
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def generate_summaries(
    model, tokenizer, instruction: str, dialogues: list[str], max_new_tokens: int, batch_size: int,
    num_beams: int = 1, max_prompt_tokens: int | None = None, progress=None,
) -> list[str]:
    """Summaries for many dialogues (greedy unless `num_beams` > 1)."""
    prompts = [build_prompt(tokenizer, instruction, d) for d in dialogues]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if max_prompt_tokens:
        # Keep the end of an over-long prompt: that is where the generation prompt sits.
        encoded = [ids[-max_prompt_tokens:] for ids in encoded]
    generated = generate_ids(model, tokenizer, encoded, max_new_tokens, batch_size, num_beams, progress)
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]


@torch.inference_mode()
def generate_ids(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                 num_beams: int = 1, progress=None) -> list[list[int]]:
    """New token ids per prompt: batches sorted by length (little padding), left padding, KV cache."""
    device = next(model.parameters()).device
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
            new = generated[row, width:].tolist()
            # Drop what follows the end token (padding of sequences that finished early).
            if tokenizer.eos_token_id in new:
                new = new[: new.index(tokenizer.eos_token_id)]
            outputs[i] = new
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    model.train(was_training)
    return outputs
