"""LoRA and DoRA through peft: low-rank adapters on the base model's linear layers; only the
adapter is saved."""
from typing import ClassVar, Literal

from pydantic import Field

from pipelines.methods.adapter_dropout import use_adapter_dropout
from pipelines.methods.common import TrainedMethod
from pipelines.methods.peft_wrap import task_type, wrap


class LoraMethod(TrainedMethod):
    """Low-rank adaptation (Hu et al., 2021) via `peft.LoraConfig`."""

    name: Literal["lora"] = "lora"
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scaling numerator: updates are scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] | str = Field(
        "all-linear",
        description="module names to adapt; 'all-linear' lets peft find every linear layer but the output head",
    )

    use_dora: ClassVar[bool] = False

    def lora_config(self, model):
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, use_dora=self.use_dora, task_type=task_type(model))

    def apply(self, model):
        model = wrap(model, self.lora_config(model), self.name)
        use_adapter_dropout(model)  # peft's nn.Dropout is the slowest part of a CPU step
        return model


class DoraMethod(LoraMethod):
    """Weight-decomposed LoRA (Liu et al., 2024): LoRA on the direction, a learned magnitude per column.
    Same hyperparameters as LoRA; only the flag differs."""

    name: Literal["dora"] = "dora"
    use_dora: ClassVar[bool] = True
