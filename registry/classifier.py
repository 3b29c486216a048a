"""The servable text classifier: an MLflow pyfunc that rebuilds its model offline.

A list of texts in (a `text` column), the label and its probability out, plus one probability
column per class (`p_<label>`). Like the summarizer it stores only what the method changed (the
adapter with its new head, or full weights) and resolves the base model when it loads.
Texts longer than the model's limit are truncated, and the response says so (`truncated`).
"""
from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from registry.adapters import with_adapter
from registry.batching import MicroBatcher
from registry.inputs import RequestLimits, texts_from_input
from registry.pyfunc import log_from_code

INPUT_COLUMN = "text"
# Sentences are short: many fit one request. 100,000 characters is far past any encoder's limit,
# and what fits is still truncated to the model's max_seq_len tokens (the response says so).
LIMITS = RequestLimits(max_rows=256, max_chars=100_000)
EXAMPLE_TEXTS = ["A warm, funny and beautifully acted film.", "The plot is a mess and the jokes fall flat."]


def signature(labels: list[str]) -> ModelSignature:
    outputs = [ColSpec("string", "label"), ColSpec("double", "probability"), ColSpec("boolean", "truncated")]
    outputs += [ColSpec("double", f"p_{name}") for name in labels]
    return ModelSignature(inputs=Schema([ColSpec("string", INPUT_COLUMN)]), outputs=Schema(outputs))


class ClassifierModel(mlflow.pyfunc.PythonModel):
    """Logged from classifier_model.py. Keep the name, module, `load_context` and `predict`
    compatible with the model configs logged before: models logged as pickles (by 4e8d2f0 and
    earlier) resolve this class by name."""

    def load_context(self, context):
        from pipelines.runtime import configure_threads, pick_device, serving_threads
        from pipelines.sources.models import load_classifier

        cfg = context.model_config
        configure_threads(serving_threads())
        device = pick_device(cfg.get("device", "auto"))
        weights = context.artifacts.get("weights")
        self.labels = list(cfg["labels"])
        model, self.tokenizer, _ = load_classifier(weights or cfg["base_source"], self.labels, device=device)
        self.model = with_adapter(model, context.artifacts.get("adapter")).eval()
        self.max_len = int(cfg["max_seq_len"])
        self.limits = LIMITS.updated_from(cfg)
        # One forward at a time per worker; requests that queue meanwhile share the next one.
        self.batcher = MicroBatcher(self._classify, max_rows=self.limits.max_rows)

    def _classify(self, texts: list[str], _key) -> list[dict]:
        from pipelines.tasks.classification import predict_proba

        probs, truncated = predict_proba(self.model, self.tokenizer, texts, self.max_len, batch_size=64)
        confidence, index = probs.max(dim=-1)
        return [{"label": self.labels[i], "probability": c, "truncated": cut,
                 **{f"p_{name}": p for name, p in zip(self.labels, row)}}
                for i, c, cut, row in zip(index.tolist(), confidence.tolist(), truncated, probs.tolist())]

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        texts = texts_from_input(model_input, INPUT_COLUMN, self.limits)
        return pd.DataFrame(self.batcher.submit(texts, key=None))


def log_classifier(*, base_source: str, artifact_kind: str, artifact_dir: str | None, labels: list[str],
                   max_seq_len: int, step: int = 0, params: dict | None = None):
    """Log the servable classifier in the active run, as the LoggedModel of training step `step`
    with `params`; returns MLflow's ModelInfo."""
    return log_from_code(
        "classifier_model.py",
        artifacts={artifact_kind: artifact_dir} if artifact_dir else {},
        model_config={"base_source": base_source, "labels": list(labels), "max_seq_len": max_seq_len,
                      "task": "classification", **LIMITS.as_config()},
        signature=signature(labels),
        input_example=pd.DataFrame({INPUT_COLUMN: EXAMPLE_TEXTS}),
        step=step,
        params=params,
    )
