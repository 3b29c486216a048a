"""How a language model is scored: teacher-forced nats on held-out blocks (perplexity, bits per
byte and per character, next-token accuracy), greedy continuations of held-out windows (BLEU-1..4,
latency per token), and samples for fixed prompts."""
from __future__ import annotations

import math
import statistics
import time

import torch

from pipelines.generation import generate_ids
from pipelines.tasks.lm_blocks import Block
from pipelines.tasks.summarization import IGNORE_INDEX, collate


@torch.inference_mode()
def teacher_forced(model, blocks: list[Block], batch_size: int, pad_id: int) -> dict[str, float]:
    """Nats, accuracy and bytes over the scored tokens of `blocks`. Bits per byte and per
    character include what spelling the unknown tokens costs (`Block.unknown_nats`); perplexity
    and accuracy are per token, as the model sees them, so a tokenizer that maps rare words to
    one unknown token gets an easy target there (`unknown_token_share` says how often)."""
    model.eval()
    device = next(model.parameters()).device
    nats = correct = tokens = 0.0
    for start in range(0, len(blocks), batch_size):
        batch = {k: v.to(device) for k, v in collate(blocks[start : start + batch_size], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        target = batch["labels"][:, 1:]
        keep = target != IGNORE_INDEX
        nats += float(torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum"))
        correct += float((logits[keep].argmax(-1) == target[keep]).sum())
        tokens += float(keep.sum())
    n_bytes, n_chars = sum(b.scored_bytes for b in blocks), sum(b.scored_chars for b in blocks)
    charged = nats + sum(b.unknown_nats for b in blocks)
    return {"perplexity": math.exp(nats / max(tokens, 1)), "bits_per_byte": charged / (math.log(2) * max(n_bytes, 1)),
            "bits_per_char": charged / (math.log(2) * max(n_chars, 1)), "token_accuracy": correct / max(tokens, 1),
            "unknown_token_share": sum(b.unknown_tokens for b in blocks) / max(tokens, 1),
            "scored_tokens": tokens, "chars_per_token": n_chars / max(tokens, 1)}


def windows(blocks: list[Block], settings) -> list[tuple[list[int], list[int]]]:
    """Fixed (prompt, true continuation) windows spread evenly over the held-out token stream."""
    stream = [t for b in blocks for t in b.input_ids]
    span = settings.prompt_tokens + settings.continuation_tokens
    count = min(settings.windows, len(stream) // span)
    stride = len(stream) // max(count, 1)
    picked = [stream[i * stride : i * stride + span] for i in range(count)]
    return [(w[: settings.prompt_tokens], w[settings.prompt_tokens :]) for w in picked]


def continuation_scores(model, tokenizer, pairs, batch_size: int) -> tuple[list[str], list[str], dict[str, float]]:
    """Greedy continuations of `pairs`, BLEU-1..4 against the true ones, latency per token."""
    import sacrebleu

    generated, per_token, started = [], [], time.perf_counter()
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        began = time.perf_counter()
        out = generate_ids(model, tokenizer, [p for p, _ in chunk], len(chunk[0][1]), batch_size)
        per_token.append((time.perf_counter() - began) / max(1, max(len(o) for o in out)))
        generated += out
    elapsed = time.perf_counter() - started
    hypotheses = [tokenizer.decode(ids) for ids in generated]
    references = [tokenizer.decode(truth) for _, truth in pairs]
    scores = {f"bleu_{n}": sacrebleu.metrics.BLEU(max_ngram_order=n).corpus_score(hypotheses, [references]).score
              for n in range(1, 5)}
    scores.update(generation_ms_per_token=1000 * statistics.mean(per_token),
                  generation_ms_per_token_std=1000 * (statistics.stdev(per_token) if len(per_token) > 1 else 0.0),
                  generation_tokens_per_s=sum(map(len, generated)) / max(elapsed, 1e-9))
    return hypotheses, references, scores


def samples(model, tokenizer, prompts: list[str], new_tokens: int) -> list[str]:
    """Greedy continuations of fixed prompts: what the model writes, shown at every validation."""
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id] for p in prompts]
    return [tokenizer.decode(out) for out in generate_ids(model, tokenizer, ids, new_tokens, len(ids))]
