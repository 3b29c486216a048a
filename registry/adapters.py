"""How a servable model puts a saved adapter back on its base: shared by every task's pyfunc."""
from __future__ import annotations


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
