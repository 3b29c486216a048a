"""QLoRA (Dettmers et al., 2023): the frozen base is loaded in 4-bit NF4 through bitsandbytes and
LoRA adapters train on top. bitsandbytes 0.50 runs this on CPU too; on CUDA it uses bf16 compute."""
from typing import Literal

from pydantic import Field

from pipelines.errors import PlatformError
from pipelines.methods.lora import LoraMethod
from pipelines.methods.peft_wrap import import_bitsandbytes


class QloraMethod(LoraMethod):
    """LoRA's hyperparameters, plus how the frozen base is quantized."""

    name: Literal["qlora"] = "qlora"
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the frozen base")
    double_quant: bool = Field(True, description="quantize the quantization constants too (saves ~0.4 bit/param)")
    gradient_checkpointing: bool = Field(
        True, description="recompute activations in the backward pass, as the QLoRA recipe does (peft's "
        "prepare_model_for_kbit_training default); false leaves it to train.gradient_checkpointing")

    def load_kwargs(self, device) -> dict:
        import torch
        from transformers import BitsAndBytesConfig

        try:
            import_bitsandbytes()
        except ImportError:
            raise PlatformError("qlora needs bitsandbytes: pip install bitsandbytes==0.50.2") from None
        compute = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        return {"quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=self.quant_type, bnb_4bit_use_double_quant=self.double_quant,
            bnb_4bit_compute_dtype=compute)}

    def train_settings(self, settings):
        # On a small model the 4-bit base saves little (0.4 of SmolLM2's 0.54 GB); activations are
        # most of a step's memory, which is why the QLoRA recipe pairs the two.
        if self.gradient_checkpointing and not settings.gradient_checkpointing:
            return settings.model_copy(update={"gradient_checkpointing": True})
        return settings

    def apply(self, model):
        from peft import prepare_model_for_kbit_training

        # Checkpointing is switched on for the training loop alone (train_settings), not here for good.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        # Then exactly LoRA's apply, not a copy of it: whatever LoRA does to a model, QLoRA does too.
        return super().apply(model)
