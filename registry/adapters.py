"""How a servable model puts a saved adapter back on its base: shared by every task's pyfunc."""
from __future__ import annotations


def load_served_lm(context):
    """(model, tokenizer) of a generating pyfunc (summarizer, text generator) from its MLflow
    context: this worker's share of the threads, the device its config asks for, the full weights
    it saved or its base source with the saved adapter put back."""
    from pipelines.runtime import configure_threads, pick_device, serving_threads
    from pipelines.sources.models import load_lm

    cfg = context.model_config
    configure_threads(serving_threads())
    device = pick_device(cfg.get("device", "auto"))
    weights = context.artifacts.get("weights")
    model, tokenizer, _ = load_lm(weights or cfg["base_source"], device=device)
    return with_adapter(model, context.artifacts.get("adapter")).eval(), tokenizer


def with_adapter(model, adapter_dir: str | None):
    """`model` with the adapter in `adapter_dir` (if any). LoRA-family and IA3 adapters are merged
    once at load (into a full-precision base, QLoRA's too), so serving runs at the plain model's
    speed; prefix and prompt tuning cannot merge and stay wrapped."""
    if not adapter_dir:
        return model
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, adapter_dir)
    if not model.peft_config["default"].is_prompt_learning:
        model = model.merge_and_unload()
    return model
