"""Causal language modelling on plain text or on a text field: packed fixed-length blocks (loss on
every token), or prompt + response rows (loss on the response only).

Scores, from teacher forcing on the eval part, never with label smoothing:
- perplexity, exp of the mean nats per scored token;
- bits per byte: total nats / (ln 2 x UTF-8 bytes of the tokens actually scored), the figure
  that stays comparable across tokenizers; a block's first token is not scored (nothing
  predicts it), so its bytes do not count. Bits per character beside it;
- next-token accuracy;
and from greedy continuations of fixed held-out windows: BLEU-1..4 against the true
continuation, generation latency per token (mean, std) and tokens/s.

A plain-text file is one document, split contiguously (`text_splits`): the last 5% is the test
part (the eval split), the 5% before it the validation part (scored during training).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import PlatformError
from pipelines.generation import generate_ids
from pipelines.sources.datasets import PLAIN_TEXT_FIELD, Example, Splits, load_splits, locate, read_ref
from pipelines.sources.models import load_lm
from pipelines.tasks.base import Fitted, Predictions, Score
from pipelines.tasks.summarization import IGNORE_INDEX, collate, summary_loss, target_tokens

VALIDATION_SHARE = TEST_SHARE = 0.05


class LanguageModelingSettings(BaseModel):
    """The spec's `language_modeling` section."""

    model_config = ConfigDict(extra="forbid")

    response_field: str | None = Field(
        None, description="rows are prompt (text_field) + response; the loss covers the response only")
    windows: int = Field(100, ge=1, description="held-out windows continued greedily for BLEU and latency")
    prompt_tokens: int = Field(64, ge=1, description="tokens of a window given as the prompt")
    continuation_tokens: int = Field(64, ge=1, description="tokens generated and compared with the true ones")


def text_splits(text: str) -> tuple[str, str, str]:
    """(train, validation, test) of one document: contiguous, the last 5% test, the 5% before it
    validation. The Quijote split of every experiment on that book."""
    test_start = round(len(text) * (1 - TEST_SHARE))
    validation_start = round(len(text) * (1 - TEST_SHARE - VALIDATION_SHARE))
    return text[:validation_start], text[validation_start:test_start], text[test_start:]


@dataclass
class Block:
    input_ids: list[int]
    labels: list[int]
    scored_bytes: int  # UTF-8 bytes of the tokens the loss scores
    scored_chars: int
    truncated: bool = False

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


def _scored_text(tokenizer, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([t for t, label in zip(ids[1:], labels[1:]) if label != IGNORE_INDEX])


def pack(tokenizer, texts: list[str], block: int, source: str) -> list[Block]:
    """Documents joined by the end-of-text token and cut into blocks of `block` tokens (the last
    partial block is dropped)."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            stream.append(tokenizer.eos_token_id)
    if len(stream) < block:
        raise PlatformError(f"{source}: {len(stream)} tokens, fewer than one block of train.max_seq_len={block}")
    blocks = []
    for start in range(0, len(stream) - block + 1, block):
        ids = stream[start : start + block]
        scored = _scored_text(tokenizer, ids, ids)
        blocks.append(Block(ids, list(ids), len(scored.encode("utf-8")), len(scored)))
    return blocks


def prompt_response(tokenizer, prompt: str, response: str, max_len: int) -> Block:
    """One row: the prompt, then the response and the end token, the loss on the response only."""
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tail = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    truncated = len(head) + len(tail) > max_len
    ids = (head + tail)[:max_len]
    labels = ([IGNORE_INDEX] * len(head) + tail)[:max_len]
    scored = _scored_text(tokenizer, ids, labels)
    return Block(ids, labels, len(scored.encode("utf-8")), len(scored), truncated)


@torch.inference_mode()
def teacher_forced(model, blocks: list[Block], batch_size: int, pad_id: int) -> dict[str, float]:
    """Nats, accuracy and bytes over the scored tokens of `blocks`."""
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
    return {"perplexity": math.exp(nats / max(tokens, 1)), "bits_per_byte": nats / (math.log(2) * max(n_bytes, 1)),
            "bits_per_char": nats / (math.log(2) * max(n_chars, 1)), "token_accuracy": correct / max(tokens, 1),
            "scored_tokens": tokens}


def windows(blocks: list[Block], settings: LanguageModelingSettings) -> list[tuple[list[int], list[int]]]:
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


class LanguageModelingTask:
    """Next-token prediction on text; scored in bits per byte and perplexity; served as a text
    generator by `registry/text_generator.py`."""

    name = "language_modeling"
    scores = (Score("bits_per_byte", "bits/byte", greater_is_better=False, points=None),
              Score("perplexity", "perplexity", greater_is_better=False, points=None),
              Score("bits_per_char", "bits/char", greater_is_better=False, points=None),
              Score("token_accuracy", "next-token acc."),
              *(Score(f"bleu_{n}", f"BLEU-{n}", points=1.0) for n in range(1, 5)),
              Score("eval_loss", "eval loss", greater_is_better=False, points=None))
    default_metric = "bits_per_byte"
    validation_scores = ("bits_per_byte", "perplexity", "token_accuracy")
    registered_model_name = "text-generator"
    input_column = "prompt"
    servable = "text_generator"
    served_output = "continuation"
    target_is_label = False

    def check_spec(self, spec) -> None:
        return None

    def load_splits(self, dataset, spec) -> Splits:
        if dataset.eval is not None or not locate(dataset.train).lower().endswith(".txt"):
            # Rows: the text field, and the response field when the loss covers only that.
            fields = {"target_field": spec.language_modeling.response_field or dataset.text_field}
            return load_splits(dataset.model_copy(update=fields), spec.seed)
        rows, source = read_ref(dataset.train, f"dataset '{dataset.name}' train")
        train, validation, test = text_splits(rows[0][PLAIN_TEXT_FIELD])
        part = lambda text, row: [Example(text=text, references=("",), row=row)]  # noqa: E731
        return Splits(part(train, 1), part(test, 3), validation=part(validation, 2),
                      sources={"train": f"{source} (first 90%)", "validation": f"{source} (5% before the test part)",
                               "eval": f"{source} (last 5%: the test part)"})

    def describe_splits(self, splits: Splits) -> str:
        return f", {sum(len(ex.text) for ex in splits.train):,} train characters"

    def load(self, source: str, splits: Splits, spec, device, load_kwargs: dict) -> Fitted:
        model, tokenizer, _ = load_lm(source, device=device, **load_kwargs)
        # Which file a part came from, for the error of a part shorter than one block.
        parts = {id(splits.train): "train", id(splits.eval): "eval", id(splits.validation): "validation"}
        named = {key: splits.sources.get(split, split) for key, split in parts.items()}
        return Fitted(model, tokenizer, spec.train.max_seq_len, {"settings": spec.language_modeling, "named": named})

    def train_statistics(self, fitted: Fitted, examples: list[Example]) -> dict[str, float]:
        return {}

    def encode(self, fitted: Fitted, spec, examples: list[Example]) -> list[Block]:
        settings: LanguageModelingSettings = fitted.context["settings"]
        if settings.response_field:
            return [prompt_response(fitted.tokenizer, ex.text, ex.references[0], fitted.max_len) for ex in examples]
        source = fitted.context["named"].get(id(examples), f"{len(examples)} held-out document(s)")
        return pack(fitted.tokenizer, [ex.text for ex in examples], fitted.max_len, source)

    collate = staticmethod(collate)
    loss = staticmethod(summary_loss)  # causal cross-entropy at the scored positions only
    loss_weight = staticmethod(target_tokens)

    def head_share(self, model, encoded: list[Block]) -> float:
        targets = sum(sum(label != IGNORE_INDEX for label in b.labels[1:]) for b in encoded)
        return targets / max(1, sum(b.n_tokens for b in encoded))

    def predict(self, fitted: Fitted, spec, examples: list[Example], progress=None,
                validating: bool = False) -> Predictions:
        blocks = self.encode(fitted, spec, examples)
        scalars = teacher_forced(fitted.model, blocks, spec.eval.scoring_batch(spec.generation),
                                 fitted.tokenizer.pad_token_id)
        if validating:
            return Predictions([], scalars=scalars)
        pairs = windows(blocks, fitted.context["settings"])
        hypotheses, references, generation = continuation_scores(fitted.model, fitted.tokenizer, pairs,
                                                                 spec.generation.batch_size)
        prompts = [fitted.tokenizer.decode(p) for p, _ in pairs]
        return Predictions(hypotheses, {"prompt": prompts, "reference": references}, {**scalars, **generation})

    def score(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict[str, float]:
        keep = ("perplexity", "bits_per_byte", "bits_per_char", "token_accuracy")
        return {k: v for k, v in predictions.scalars.items() if k in keep}

    def prediction_table(self, examples: list[Example], predictions: Predictions) -> dict[str, list]:
        return {"prompt": predictions.extras.get("prompt", []), "reference": predictions.extras.get("reference", []),
                "continuation": predictions.outputs}

    def figures(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict:
        return {}

    def servable_kwargs(self, fitted: Fitted, spec) -> dict:
        settings: LanguageModelingSettings = fitted.context["settings"]
        return {"max_new_tokens": settings.continuation_tokens, "max_prompt_tokens": spec.train.max_seq_len}

    def served_examples(self, examples, config: dict, label_map, drop_labels, data: str) -> list[Example]:
        # Bits per byte and perplexity need the model's logits, which a served generator does not give.
        raise PlatformError("evaluate scores what a model serves; a language model is scored in bits per byte by "
                            "peft_compare (a spec with task: language_modeling), which reads its logits")

    def score_served(self, out, examples: list[Example], config: dict):
        raise NotImplementedError  # served_examples refuses first
