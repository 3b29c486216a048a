"""Summarization on a causal LM (prompt, then the summary; loss only on the summary) or on an
encoder-decoder (prompt into the encoder, summary as decoder labels): prompt format, batching,
batched generation."""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from pipelines.generation import generate_ids
from pipelines.metrics import summarization_scores
from pipelines.sources.datasets import Example, Splits, load_splits
from pipelines.sources.models import is_seq2seq, load_lm
from pipelines.tasks.base import Fitted, Predictions, Score, pretrained_only

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


def summary_loss(model, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the target tokens, the same value as `model(**batch).loss`.

    A causal LM's loss covers only the summary (~10% of the tokens here), so the output head and
    the softmax over the vocabulary (49k for SmolLM2: a fifth of the model's matmul work, and the
    largest activations of a step) run only at the positions that predict a summary token
    (transformers' `logits_to_keep` with a boolean mask). Models that cannot take that
    (encoder-decoders, prompt-learning adapters that prepend virtual tokens) use their own loss.
    """
    if not predicts_at_targets_only(model):
        return _smoothed_loss(model, batch, label_smoothing) if label_smoothing else model(**batch).loss
    labels = batch["labels"]
    next_token = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # position t predicts t+1
    keep = next_token != IGNORE_INDEX
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(logits.float(), next_token[keep], label_smoothing=label_smoothing)


def _smoothed_loss(model, batch: dict[str, torch.Tensor], label_smoothing: float) -> torch.Tensor:
    """The model's own loss with label smoothing, which transformers' loss does not take: the
    decoder's logits against its labels (seq2seq), or the shifted logits of a causal model whose
    prompt-learning adapter prepends virtual tokens (their positions are dropped)."""
    labels = batch["labels"]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}, labels=labels).logits.float()
    if not getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        logits, labels = logits[:, -labels.size(1):-1], labels[:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                             ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)


def target_tokens(batch: dict[str, torch.Tensor]) -> int:
    """The tokens a batch's loss averages over: its eval_loss weight."""
    return int((batch["labels"] != IGNORE_INDEX).sum())


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


def generate_summaries(
    model, tokenizer, instruction: str, dialogues: list[str], max_new_tokens: int, batch_size: int,
    num_beams: int = 1, max_prompt_tokens: int | None = None, progress=None, stats: dict | None = None,
) -> list[str]:
    """Summaries for many dialogues (greedy unless `num_beams` > 1); `stats` as `generate_ids` fills it."""
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    prompts = [build_prompt(tokenizer, instruction, d, seq2seq) for d in dialogues]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if seq2seq:
        encoded = [ids + _target_suffix(tokenizer) for ids in encoded]
    if max_prompt_tokens:
        # Causal: keep the end of an over-long prompt, where the generation prompt sits.
        # Seq2seq: keep the start, where the instruction sits.
        encoded = [ids[:max_prompt_tokens] if seq2seq else ids[-max_prompt_tokens:] for ids in encoded]
    generated = generate_ids(model, tokenizer, encoded, max_new_tokens, batch_size, num_beams, progress, stats)
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]


class SummarizationTask:
    """Dialogue (or article) in, summary out, on a causal LM or an encoder-decoder; scored with
    ROUGE and BLEU against one or more references; served by `registry/summarizer.py`."""

    name = "summarization"
    scores = (Score("rouge1", "ROUGE-1"), Score("rouge2", "ROUGE-2"), Score("rougeL", "ROUGE-L"),
              Score("rougeLsum", "ROUGE-Lsum"), Score("bleu", "BLEU", points=1.0),
              *(Score(f"precision_{n}", f"P{n}", points=1.0) for n in range(1, 5)),
              Score("eval_loss", "eval loss", greater_is_better=False, points=None))
    default_metric = "rougeL"
    validation_scores = ("rougeL", "rouge1", "rouge2", "rougeLsum", "bleu")
    registered_model_name = "dialogue-summarizer"
    input_column = "dialogue"
    servable = "summarizer"
    served_output = "summary"
    target_is_label = False

    def check_spec(self, spec) -> None:
        pretrained_only(spec, self.name)

    def load_splits(self, dataset, spec) -> Splits:
        return load_splits(dataset, spec.seed)

    def describe_splits(self, splits: Splits) -> str:
        return ""

    def reference_scores(self, splits: Splits) -> dict[str, dict[str, float]]:
        return {}

    def train_statistics(self, fitted: Fitted, examples: list[Example]) -> dict[str, float]:
        return {}

    def load(self, model_src, splits: Splits, spec, device, load_kwargs: dict) -> Fitted:
        model, tokenizer, _ = load_lm(model_src.source, device=device, **load_kwargs)
        return Fitted(model, tokenizer, spec.train.max_seq_len)

    def encode(self, fitted: Fitted, spec, examples: list[Example]) -> list[Encoded]:
        seq2seq = is_seq2seq(fitted.model)
        return [encode_for_training(fitted.tokenizer, spec.generation.instruction, ex.text, ex.references[0],
                                    spec.train.max_seq_len, spec.train.max_target_tokens, seq2seq=seq2seq)
                for ex in examples]

    collate = staticmethod(collate)
    loss = staticmethod(summary_loss)
    loss_weight = staticmethod(target_tokens)
    head_share = staticmethod(head_share)

    def predict(self, fitted: Fitted, spec, examples: list[Example], progress=None,
                validating: bool = False) -> Predictions:
        gen = spec.generation
        stats: dict = {}
        summaries = generate_summaries(
            fitted.model, fitted.tokenizer, gen.instruction, [ex.text for ex in examples], gen.max_new_tokens,
            gen.batch_size, 1 if validating else gen.num_beams, max_prompt_tokens=spec.train.max_seq_len,
            progress=progress, stats=stats)
        # Logged with the cell's scores: how much of the prefill the length sorting left as padding.
        return Predictions(summaries, scalars={"prefill_padding_share": stats["prefill_padding_share"]})

    def score(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict[str, float]:
        return summarization_scores(predictions.outputs, [list(ex.references) for ex in examples])

    def prediction_table(self, examples: list[Example], predictions: Predictions) -> dict[str, list]:
        return {"row": [ex.row for ex in examples], "dialogue": [ex.text for ex in examples],
                "reference": [ex.references[0] for ex in examples], "prediction": predictions.outputs}

    def figures(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict:
        return {}

    def servable_kwargs(self, fitted: Fitted, spec) -> dict:
        return {"generation": spec.generation, "max_prompt_tokens": spec.train.max_seq_len}

    def served_examples(self, examples, config: dict, label_map, drop_labels, data: str) -> list[Example]:
        return examples

    def score_served(self, out, examples: list[Example], config: dict):
        """(scores, prediction columns, figures) of what a served summarizer answered."""
        summaries = out["summary"].tolist()
        return summarization_scores(summaries, [list(ex.references) for ex in examples]), {"prediction": summaries}, {}
