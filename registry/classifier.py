"""The servable text classifier: an MLflow pyfunc that rebuilds its model offline.

A list of texts in (a `text` column), the label and its probability out, plus one probability
column per class (`p_<label>`). Like the summarizer it stores only what the method changed (the
adapter with its new head, or full weights) and resolves the base model when it loads.
Texts longer than the model's limit are truncated, and the response says so (`truncated`).
"""
from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from registry.summarizer import REPO_ROOT, _bad_request, pip_requirements

INPUT_COLUMN = "text"
MAX_ROWS = 256  # per request: bounds one request's latency and memory
MAX_CHARS = 100_000  # per text: longer ones are refused, not tokenized (tokenizing 1 MB costs seconds)
EXAMPLE_TEXTS = ["A warm, funny and beautifully acted film.", "The plot is a mess and the jokes fall flat."]


def signature(labels: list[str]) -> ModelSignature:
    outputs = [ColSpec("string", "label"), ColSpec("double", "probability"), ColSpec("boolean", "truncated")]
    outputs += [ColSpec("double", f"p_{name}") for name in labels]
    return ModelSignature(inputs=Schema([ColSpec("string", INPUT_COLUMN)]), outputs=Schema(outputs))


def texts_from_request(model_input) -> list[str]:
    """The request's texts, or a 400 that names what is wrong."""
    if isinstance(model_input, pd.DataFrame):
        if INPUT_COLUMN not in model_input.columns:
            raise _bad_request(f"input needs a '{INPUT_COLUMN}' column, got {list(model_input.columns)}")
        texts = model_input[INPUT_COLUMN].tolist()
    elif isinstance(model_input, (list, tuple)):
        texts = list(model_input)
    else:
        raise _bad_request(f"input must be a table with a '{INPUT_COLUMN}' column or a list of texts")
    if not texts:
        raise _bad_request("input has no rows")
    if len(texts) > MAX_ROWS:
        raise _bad_request(f"at most {MAX_ROWS} texts per request, got {len(texts)}")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise _bad_request(f"row {i}: '{INPUT_COLUMN}' must be a non-empty string")
        if len(text) > MAX_CHARS:
            raise _bad_request(f"row {i}: text has {len(text)} characters, more than the {MAX_CHARS} allowed")
    return texts


class ClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from pipelines.runtime import configure_threads, pick_device
        from pipelines.sources.models import load_classifier

        cfg = context.model_config
        configure_threads()
        device = pick_device(cfg.get("device", "auto"))
        weights = context.artifacts.get("weights")
        self.labels = list(cfg["labels"])
        self.model, self.tokenizer, _ = load_classifier(weights or cfg["base_source"], self.labels, device=device)
        adapter = context.artifacts.get("adapter")
        if adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter)
            if not self.model.peft_config["default"].is_prompt_learning:
                self.model = self.model.merge_and_unload()  # plain-model speed when serving
        self.model.eval()
        self.max_len = int(cfg["max_seq_len"])

    def predict(self, context, model_input, params=None):
        from pipelines.tasks.classification import predict_proba

        texts = texts_from_request(model_input)
        probs = predict_proba(self.model, self.tokenizer, texts, self.max_len)
        confidence, index = probs.max(dim=-1)
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        out = pd.DataFrame({"label": [self.labels[i] for i in index.tolist()], "probability": confidence.tolist(),
                            "truncated": [n > self.max_len for n in lengths]})
        for k, name in enumerate(self.labels):
            out[f"p_{name}"] = probs[:, k].tolist()
        return out


def log_classifier(*, base_source: str, artifact_kind: str, artifact_dir: str | None, labels: list[str],
                   max_seq_len: int):
    """Log the servable classifier in the active run; returns MLflow's ModelInfo."""
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=ClassifierModel(),
        artifacts={artifact_kind: artifact_dir} if artifact_dir else {},
        model_config={"base_source": base_source, "labels": list(labels), "max_seq_len": max_seq_len,
                      "task": "classification"},
        code_paths=[str(REPO_ROOT / "pipelines"), str(REPO_ROOT / "registry")],
        signature=signature(labels),
        input_example=pd.DataFrame({INPUT_COLUMN: EXAMPLE_TEXTS}),
        pip_requirements=pip_requirements(),
    )
