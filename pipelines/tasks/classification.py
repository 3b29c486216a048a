"""Sequence classification on an encoder (BERT-like, [CLS] head) or a decoder (last-token head):
label sets, encoding, batching and batched prediction.

Labels are strings everywhere outside the model (`"0"`, `"positive"`); the model sees their index
in the label list, which is also what `id2label` records in the saved config.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from pipelines.errors import PlatformError
from pipelines.metrics import classification_scores, confusion_matrix_figure
from pipelines.sources.datasets import Example, Splits, load_splits
from pipelines.sources.models import load_classifier
from pipelines.tasks.base import Fitted, Predictions, Score, pretrained_only
from pipelines.tasks.tokenizer_stats import tokenizer_stats

TOKENIZER_SAMPLE = 2000  # rows measured for the tokenizer table: enough for stable means, quick on 60k-row sets


def _relabelled(examples: list[Example], dataset) -> list[Example]:
    out = []
    for ex in examples:
        label = dataset.label_map.get(ex.references[0], ex.references[0])
        if label not in dataset.drop_labels:
            out.append(replace(ex, references=(label,)))
    return out


def prepare_labels(splits: Splits, dataset) -> Splits:
    """Apply the dataset's `label_map` and `drop_labels`, fix the label set, and check every row
    against it, so a stray label fails before any model loads. Without declared `labels` the task
    is binary: the train split must hold exactly two labels."""
    train, evaluation = _relabelled(splits.train, dataset), _relabelled(splits.eval, dataset)
    if not train or not evaluation:
        raise PlatformError(f"dataset '{dataset.name}': no rows left after drop_labels={dataset.drop_labels}")
    seen = sorted({ex.references[0] for ex in train})
    if dataset.labels is None:
        if len(seen) != 2:
            raise PlatformError(f"dataset '{dataset.name}' is binary by default but its train split has {len(seen)} "
                                f"labels {seen[:10]}: declare `labels` for multi-class, or use `drop_labels`")
        names = seen
    else:
        names = list(dataset.labels)
    known = set(names)
    for split_name, examples in (("train", train), ("eval", evaluation)):
        declared = dataset.train if split_name == "train" else dataset.eval or dataset.train
        source = splits.sources.get(split_name) or (declared if isinstance(declared, str) else dataset.name)
        for ex in examples:
            if ex.references[0] not in known:
                raise PlatformError(f"{source} row {ex.row}: label {ex.references[0]!r} is not in the declared labels "
                                    f"{names} ({split_name} split of dataset '{dataset.name}')")
    return Splits(train=train, eval=evaluation, labels=tuple(names), sources=splits.sources)


@dataclass
class EncodedText:
    input_ids: list[int]
    label: int
    truncated: bool

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


def encode_text(tokenizer, text: str, label: int, max_len: int) -> EncodedText:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    return EncodedText(ids[:max_len], label, len(ids) > max_len)


def collate_labels(batch: list[EncodedText], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad; decoder heads find the last real token from the attention mask and pad id."""
    width = max(len(item.input_ids) for item in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        ids[row, : len(item.input_ids)] = torch.tensor(item.input_ids)
        mask[row, : len(item.input_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([item.label for item in batch])}


def classification_loss(model, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the head's logits (the model computes it from `labels`, except with label
    smoothing, which transformers' loss does not take)."""
    if not label_smoothing:
        return model(**batch).loss
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return torch.nn.functional.cross_entropy(logits.float(), batch["labels"], label_smoothing=label_smoothing)


def batch_examples(batch: dict[str, torch.Tensor]) -> int:
    """What a batch's loss averages over: its examples (the eval_loss weight)."""
    return int(batch["labels"].numel())


@torch.inference_mode()
def predict_proba(model, tokenizer, texts: list[str], max_len: int,
                  batch_size: int = 32) -> tuple[torch.Tensor, list[bool]]:
    """Class probabilities (n, n_labels) in input order, and which texts were cut to `max_len`;
    batches are sorted by length so little compute goes to padding."""
    model.eval()
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    encoded = [encode_text(tokenizer, t, 0, max_len) for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].n_tokens)
    probs = torch.empty((len(texts), model.config.num_labels))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate_labels([encoded[i] for i in idx], pad_id)
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
        probs[idx] = torch.softmax(logits.float(), dim=-1).cpu()
    return probs, [e.truncated for e in encoded]


class ClassificationTask:
    """Text in, one of the dataset's labels out, from a new head on an encoder ([CLS]) or a decoder
    (last token); scored with accuracy, macro F1 and calibration; served by `registry/classifier.py`."""

    name = "classification"
    scores = (Score("accuracy", "accuracy"), Score("f1_macro", "F1 (macro)"),
              Score("precision_macro", "precision"), Score("recall_macro", "recall"),
              Score("ece", "ECE", greater_is_better=False),
              Score("eval_loss", "eval loss", greater_is_better=False, points=None))
    default_metric = "accuracy"
    validation_scores = ("accuracy", "f1_macro")
    registered_model_name = "text-classifier"
    input_column = "text"
    servable = "classifier"
    served_output = "label"
    target_is_label = True

    def check_spec(self, spec) -> None:
        pretrained_only(spec, self.name)
        for i, method in enumerate(spec.methods):
            if not method.trains:
                raise ValueError(f"methods.{i}: '{method.name}' has nothing to score for classification: the "
                                 "classification head starts untrained; use full, lora, ia3, ...")

    def load_splits(self, dataset, spec) -> Splits:
        return prepare_labels(load_splits(dataset, spec.seed, labels=True), dataset)

    def describe_splits(self, splits: Splits) -> str:
        return f", labels {list(splits.labels)}"

    def load(self, model_src, splits: Splits, spec, device, load_kwargs: dict) -> Fitted:
        labels = list(splits.labels)
        model, tokenizer, _ = load_classifier(model_src.source, labels, device=device, **load_kwargs)
        limit = getattr(model.config, "max_position_embeddings", None) or spec.train.max_seq_len
        if spec.train.max_seq_len > limit:
            print(f"  max_seq_len {spec.train.max_seq_len} exceeds the model's {limit} positions: using {limit}")
        return Fitted(model, tokenizer, min(spec.train.max_seq_len, limit), {"labels": labels})

    def reference_scores(self, splits: Splits) -> dict[str, dict[str, float]]:
        return {}

    def train_statistics(self, fitted: Fitted, examples: list[Example]) -> dict[str, float]:
        return tokenizer_stats(fitted.tokenizer, [ex.text for ex in examples[:TOKENIZER_SAMPLE]])

    def encode(self, fitted: Fitted, spec, examples: list[Example]) -> list[EncodedText]:
        index = {name: i for i, name in enumerate(fitted.context["labels"])}
        return [encode_text(fitted.tokenizer, ex.text, index[ex.references[0]], fitted.max_len) for ex in examples]

    collate = staticmethod(collate_labels)
    loss = staticmethod(classification_loss)
    loss_weight = staticmethod(batch_examples)

    def head_share(self, model, encoded: list) -> float:
        return 1.0

    def predict(self, fitted: Fitted, spec, examples: list[Example], progress=None,
                validating: bool = False) -> Predictions:
        labels = fitted.context["labels"]
        probs, truncated = predict_proba(fitted.model, fitted.tokenizer, [ex.text for ex in examples],
                                         fitted.max_len, spec.eval.scoring_batch(spec.generation))
        confidence, index = probs.max(dim=-1)
        return Predictions([labels[i] for i in index.tolist()], {"probability": confidence.tolist()},
                           {"eval_truncated_examples": sum(truncated)})

    def score(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict[str, float]:
        return classification_scores(predictions.outputs, predictions.extras["probability"],
                                     [ex.references[0] for ex in examples], fitted.context["labels"])

    def prediction_table(self, examples: list[Example], predictions: Predictions) -> dict[str, list]:
        return {"row": [ex.row for ex in examples], "text": [ex.text for ex in examples],
                "label": [ex.references[0] for ex in examples], "prediction": predictions.outputs,
                "probability": predictions.extras["probability"]}

    def figures(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict:
        gold = [ex.references[0] for ex in examples]
        return {"confusion_matrix.png": confusion_matrix_figure(predictions.outputs, gold, fitted.context["labels"])}

    def servable_kwargs(self, fitted: Fitted, spec) -> dict:
        return {"labels": fitted.context["labels"], "max_seq_len": fitted.max_len}

    def served_examples(self, examples, config: dict, label_map: dict[str, str], drop: list[str],
                        data: str) -> list[Example]:
        """Map the data's labels onto the model's, drop the ones asked for, and refuse the rest."""
        model_labels = list(config.get("labels", []))
        kept = []
        for ex in examples:
            label = label_map.get(ex.references[0], ex.references[0])
            if label in drop:
                continue
            if label not in model_labels:
                raise PlatformError(f"{data} row {ex.row}: label '{label}' is not one the model predicts "
                                    f"{model_labels} (map it with --label-map or leave it out with --drop-labels)")
            kept.append(replace(ex, references=(label,)))
        if not kept:
            raise PlatformError(f"{data}: no rows left after --drop-labels {drop}")
        return kept

    def score_served(self, out, examples: list[Example], config: dict):
        """(scores, prediction columns, figures) of what a served classifier answered."""
        labels, gold = list(config.get("labels", [])), [ex.references[0] for ex in examples]
        predicted, probability = out["label"].tolist(), out["probability"].tolist()
        return (classification_scores(predicted, probability, gold, labels),
                {"prediction": predicted, "probability": probability},
                {"confusion_matrix.png": confusion_matrix_figure(predicted, gold, labels)})
