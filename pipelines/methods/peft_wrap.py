"""The one place a peft config meets a model, so every PEFT method fails the same clear way."""
from __future__ import annotations

import logging

from pipelines.errors import PlatformError

# peft imports bitsandbytes whenever it is installed (peft 0.21, peft/helpers.py), so LoRA, DoRA,
# IA3 and prompt learning import it too, not only QLoRA. On a CPU with AVX512-BF16 that import logs
# advice to install `kernels` for a faster 4-bit matmul, which concerns a 4-bit base alone: the
# filter drops that one message, and QLoRA imports bitsandbytes itself, first, with it shown.
_BNB_CPU_LOG = logging.getLogger("bitsandbytes.backends.cpu.ops")


def _not_kernels_advice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Failed to load CPU gemm_4bit_forward")


_BNB_CPU_LOG.addFilter(_not_kernels_advice)


def import_bitsandbytes():
    """bitsandbytes with its CPU advice shown, for the method that runs its 4-bit kernels. The
    advice comes once per process, at the first import: after a LoRA cell, QLoRA's shows nothing."""
    _BNB_CPU_LOG.removeFilter(_not_kernels_advice)
    try:
        import bitsandbytes
    finally:
        _BNB_CPU_LOG.addFilter(_not_kernels_advice)
    return bitsandbytes


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
