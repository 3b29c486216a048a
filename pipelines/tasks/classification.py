"""Sequence classification on an encoder (BERT-like, [CLS] head) or a decoder (last-token head):
label sets, encoding, batching and batched prediction.

Labels are strings everywhere outside the model (`"0"`, `"positive"`); the model sees their index
in the label list, which is also what `id2label` records in the saved config.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from pipelines.errors import PlatformError
from pipelines.sources.datasets import Example, Splits


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
        source = splits.sources.get(split_name, dataset.name)
        for ex in examples:
            if ex.references[0] not in known:
                raise PlatformError(f"{source} row {ex.row}: label '{ex.references[0]}' is not in the declared labels "
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


def classification_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the head's logits (the model computes it from `labels`)."""
    return model(**batch).loss


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
