"""QLoRA (Dettmers et al., 2023): the frozen base is loaded in 4-bit NF4 through bitsandbytes and
LoRA adapters train on top. bitsandbytes 0.50 runs this on CPU too; on CUDA it uses bf16 compute."""
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import PlatformError
from pipelines.methods.peft_wrap import task_type, wrap


class QloraMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["qlora"] = "qlora"
    learning_rate: float = Field(1e-3, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0)
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="as for lora")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the frozen base")
    double_quant: bool = Field(True, description="quantize the quantization constants too (saves ~0.4 bit/param)")

    trains: ClassVar[bool] = True
    artifact_kind: ClassVar[str] = "adapter"

    def load_kwargs(self, device) -> dict:
        import torch
        from transformers import BitsAndBytesConfig

        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise PlatformError("qlora needs bitsandbytes: pip install bitsandbytes==0.50.2") from None
        compute = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        return {"quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=self.quant_type, bnb_4bit_use_double_quant=self.double_quant,
            bnb_4bit_compute_dtype=compute)}

    def apply(self, model):
        from peft import LoraConfig, prepare_model_for_kbit_training

        # Gradient checkpointing stays a training setting of its own, not a side effect of QLoRA.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        config = LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=self.target_modules, task_type=task_type(model))
        return wrap(model, config, self.name)
