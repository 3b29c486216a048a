"""LoRA through peft: low-rank adapters on the base model's linear layers; only the adapter is saved."""
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import PlatformError


class LoraMethod(BaseModel):
    """Low-rank adaptation (Hu et al., 2021) via `peft.LoraConfig`."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["lora"] = "lora"
    learning_rate: float = Field(1e-3, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scaling numerator: updates are scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] | str = Field(
        "all-linear",
        description="module names to adapt; 'all-linear' lets peft find every linear layer but the output head",
    )

    trains: ClassVar[bool] = True
    artifact_kind: ClassVar[str] = "adapter"

    def peft_config(self, task_type: str):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type=task_type,
        )

    def apply(self, model, task_type: str = "CAUSAL_LM"):
        from peft import get_peft_model

        try:
            return get_peft_model(model, self.peft_config(task_type))
        except ValueError as exc:  # peft's message names the missing target modules
            raise PlatformError(f"lora cannot apply to {type(model).__name__}: {exc}") from exc
