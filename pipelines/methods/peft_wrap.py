"""The one place a peft config meets a model, so every PEFT method fails the same clear way."""
from __future__ import annotations

from pipelines.errors import PlatformError


def wrap(model, peft_config, method: str):
    from peft import get_peft_model

    try:
        return get_peft_model(model, peft_config)
    except (ValueError, KeyError, TypeError) as exc:  # peft's message names the missing modules
        raise PlatformError(f"{method} cannot apply to {type(model).__name__}: {exc}") from exc


def task_type(model) -> str:
    """peft's task type from the model class, so seq2seq and classifier heads get the right wrapper."""
    name = type(model).__name__
    if name.endswith(("ForSeq2SeqLM", "ForConditionalGeneration")):
        return "SEQ_2_SEQ_LM"
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    return "CAUSAL_LM"
