"""The classification side of a cell, read top to bottom:

load the base model with a new head over the dataset's labels -> apply the method -> measure how
the tokenizer cuts the training text -> train within the budget (validating accuracy every N steps
when asked) -> predict the eval split -> score, calibration and confusion matrix -> save what the
method changed -> log predictions and a servable classifier.
"""
from __future__ import annotations

import time
from pathlib import Path

import mlflow
import torch

from pipelines.efficiency import mfu, peak_flops, training_flops_per_token
from pipelines.methods.common import save_changed_weights
from pipelines.metrics import classification_scores, confusion_matrix_figure
from pipelines.resources import bytes_on_disk, parameter_counts
from pipelines.runtime import autocast_dtype
from pipelines.sources.models import load_classifier
from pipelines.tasks.classification import classification_loss, collate_labels, encode_text, predict_proba
from pipelines.tasks.tokenizer_stats import tokenizer_stats
from pipelines.train import train
from pipelines.train_setup import prepared_for_training
from registry.classifier import log_classifier

TOKENIZER_SAMPLE = 2000  # rows measured for the tokenizer table: enough for stable means, quick on 60k-row sets


def _max_len(spec, model) -> int:
    limit = getattr(model.config, "max_position_embeddings", None) or spec.train.max_seq_len
    if spec.train.max_seq_len > limit:
        print(f"  max_seq_len {spec.train.max_seq_len} exceeds the model's {limit} positions: using {limit}")
    return min(spec.train.max_seq_len, limit)


def _predict(model, tokenizer, examples, labels, max_len, batch_size):
    probs, truncated = predict_proba(model, tokenizer, [ex.text for ex in examples], max_len, batch_size)
    confidence, index = probs.max(dim=-1)
    return probs, [labels[i] for i in index.tolist()], confidence.tolist(), truncated


def fit_and_predict(spec, model_src, method, splits, eval_examples, device, workdir: Path, on_validation=None):
    """Returns (scalars, outputs); `outputs` is what `log_outputs` needs after resources are measured."""
    labels = list(splits.labels)
    index = {name: i for i, name in enumerate(labels)}
    scalars: dict[str, float] = {}
    torch.manual_seed(spec.seed)
    model, tokenizer, _ = load_classifier(model_src.source, labels, device=device, **method.load_kwargs(device))
    model = method.apply(model)
    scalars.update(parameter_counts(model))
    max_len = _max_len(spec, model)
    scalars.update(tokenizer_stats(tokenizer, [ex.text for ex in splits.train[:TOKENIZER_SAMPLE]]))
    batch = spec.generation.batch_size

    train_set = [encode_text(tokenizer, ex.text, index[ex.references[0]], max_len) for ex in splits.train]
    scalars["train_truncated_examples"] = truncated = sum(e.truncated for e in train_set)
    if truncated:
        print(f"  {truncated}/{len(train_set)} training texts truncated to {max_len} tokens")
    subset = eval_examples[: spec.train.eval_subset]

    amp = autocast_dtype(spec.train.precision, device)

    def validate(m):  # the model as it trains: a bf16 frozen base needs autocast
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            _, predicted, confidence, _ = _predict(m, tokenizer, subset, labels, max_len, batch)
        return classification_scores(predicted, confidence, [ex.references[0] for ex in subset], labels)

    flops_per_token = training_flops_per_token(model, sum(e.n_tokens for e in train_set) / max(1, len(train_set)))
    peak = peak_flops(device, amp or torch.float32)
    with prepared_for_training(model, method.train_settings(spec.train), amp):  # as in a summarization cell
        fit = train(
            model, train_set, spec.train, learning_rate=method.learning_rate, weight_decay=method.weight_decay,
            seed=spec.seed, pad_id=tokenizer.pad_token_id, device=device, amp_dtype=amp,
            log=lambda metrics, step: mlflow.log_metrics(metrics, step=step), validate=validate,
            on_validation=on_validation, flops_per_token=flops_per_token, peak_flops=peak, collate_fn=collate_labels,
            loss_fn=classification_loss,
        )
    scalars.update(train_steps=fit.steps, train_examples=fit.examples, train_tokens=fit.tokens,
                   train_time_s=fit.train_time_s, train_tokens_per_s=fit.tokens_per_s,
                   train_examples_per_s=fit.examples / max(fit.train_time_s, 1e-9),
                   train_flops_per_token=flops_per_token, peak_flops=peak,
                   mfu=mfu(fit.tokens_per_s, flops_per_token, peak))
    if fit.best_step is not None:
        scalars.update(best_step=fit.best_step, best_val_score=fit.best_value)
    mlflow.set_tag("stopped_by", fit.stopped_by)

    started = time.perf_counter()
    print(f"  classifying {len(eval_examples)} eval texts", flush=True)
    probs, predicted, confidence, truncated = _predict(model, tokenizer, eval_examples, labels, max_len, batch)
    scalars["eval_time_s"] = time.perf_counter() - started
    gold = [ex.references[0] for ex in eval_examples]
    scalars.update(classification_scores(predicted, confidence, gold, labels))
    gold_prob = probs[torch.arange(len(gold)), torch.tensor([index[g] for g in gold])]
    scalars["eval_loss"] = float(-torch.log(gold_prob.clamp_min(1e-12)).mean())
    scalars["eval_truncated_examples"] = sum(truncated)
    saved = save_changed_weights(method, model, tokenizer, workdir)
    scalars["saved_bytes"] = bytes_on_disk(saved) if saved else 0
    scalars["saved_mb"] = scalars["saved_bytes"] / 2**20
    outputs = {"labels": labels, "predicted": predicted, "confidence": confidence, "gold": gold, "saved": saved,
               "max_len": max_len}
    return scalars, outputs


def log_outputs(model_src, method, eval_examples, outputs, base_source: str) -> str:
    """Predictions table, confusion matrix and the servable classifier; returns the model URI."""
    mlflow.log_table({"row": [ex.row for ex in eval_examples], "text": [ex.text for ex in eval_examples],
                      "label": outputs["gold"], "prediction": outputs["predicted"],
                      "probability": outputs["confidence"]}, artifact_file="predictions.json")
    figure = confusion_matrix_figure(outputs["predicted"], outputs["gold"], outputs["labels"])
    mlflow.log_figure(figure, "confusion_matrix.png")
    import matplotlib.pyplot as plt

    plt.close(figure)
    info = log_classifier(base_source=base_source, artifact_kind=method.artifact_kind, artifact_dir=outputs["saved"],
                          labels=outputs["labels"], max_seq_len=outputs["max_len"])
    return info.model_uri
