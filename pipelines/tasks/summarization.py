"""Summarization on a causal LM (prompt, then the summary; loss only on the summary) or on an
encoder-decoder (prompt into the encoder, summary as decoder labels): prompt format, batching,
batched generation."""
from __future__ import annotations

import inspect
import random
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


def build_prompt(tokenizer, instruction: str, dialogue: str, seq2seq: bool = False) -> str:
    """The text the model continues with its summary (causal: the chat template when the tokenizer
    has one), or the encoder input of a seq2seq model (instruction and dialogue, T5-style)."""
    content = f"{instruction}\n\n{dialogue}"
    if seq2seq:
        return content
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
    labels: list[int]  # causal: aligned with input_ids, prompt masked; seq2seq: the decoder targets
    truncated: bool
    seq2seq: bool = False

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids) + (len(self.labels) if self.seq2seq else 0)


def encode_for_training(tokenizer, instruction: str, dialogue: str, summary: str, max_len: int, max_target: int,
                        seq2seq: bool = False) -> Encoded:
    """Token ids for one (dialogue, summary) pair.

    Causal: prompt + summary, labels masked to the summary and its end token; when the pair is
    longer than `max_len`, the dialogue is cut (not the instruction or the generation prompt).
    Seq2seq: the prompt (cut to `max_len`) feeds the encoder, the summary is the decoder target.
    """
    if seq2seq:
        target = tokenizer(summary.strip(), add_special_tokens=False)["input_ids"][:max_target] + _target_suffix(tokenizer)
        source = tokenizer(build_prompt(tokenizer, instruction, dialogue, seq2seq=True),
                           add_special_tokens=False)["input_ids"] + _target_suffix(tokenizer)
        return Encoded(source[:max_len], target, len(source) > max_len, seq2seq=True)
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
    """Right-pad a batch; padded positions get no attention and no loss. Seq2seq labels are
    padded to their own width (the model shifts them into decoder inputs itself)."""
    width = max(len(item.input_ids) for item in batch)
    label_width = max(len(item.labels) for item in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), label_width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, : len(item.labels)] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def padded_tokens(batch: list[Encoded]) -> int:
    """Token slots `collate` fills for this batch, padding included."""
    slots = len(batch) * max(len(item.input_ids) for item in batch)
    if getattr(batch[0], "seq2seq", False):  # other tasks' examples have no decoder side
        slots += len(batch) * max(len(item.labels) for item in batch)
    return slots


def summary_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the target tokens, the same value as `model(**batch).loss`.

    A causal LM's loss covers only the summary (~10% of the tokens here), so the output head and
    the softmax over the vocabulary (49k for SmolLM2: a fifth of the model's matmul work, and the
    largest activations of a step) run only at the positions that predict a summary token
    (transformers' `logits_to_keep` with a boolean mask). Models that cannot take that
    (encoder-decoders, prompt-learning adapters that prepend virtual tokens) use their own loss.
    """
    if not predicts_at_targets_only(model):
        return model(**batch).loss
    labels = batch["labels"]
    next_token = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # position t predicts t+1
    keep = next_token != IGNORE_INDEX
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(logits.float(), next_token[keep])


def head_share(model, examples: list[Encoded]) -> float:
    """Share of the tokens at which `summary_loss` runs the output head (for FLOP counting)."""
    if not predicts_at_targets_only(model):
        return 1.0
    targets = sum(sum(label != IGNORE_INDEX for label in e.labels[1:]) for e in examples)
    return targets / max(1, sum(len(e.input_ids) for e in examples))


def predicts_at_targets_only(model) -> bool:
    """Whether `summary_loss` can compute logits at the target positions alone."""
    model = getattr(model, "_orig_mod", model)  # under torch.compile
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


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
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    prompts = [build_prompt(tokenizer, instruction, d, seq2seq) for d in dialogues]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if seq2seq:
        encoded = [ids + _target_suffix(tokenizer) for ids in encoded]
    if max_prompt_tokens:
        # Causal: keep the end of an over-long prompt, where the generation prompt sits.
        # Seq2seq: keep the start, where the instruction sits.
        encoded = [ids[:max_prompt_tokens] if seq2seq else ids[-max_prompt_tokens:] for ids in encoded]
    generated = generate_ids(model, tokenizer, encoded, max_new_tokens, batch_size, num_beams, progress)
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]


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
