"""LoRA and DoRA through peft: low-rank adapters on the base model's linear layers; only the
adapter is saved."""
from typing import ClassVar, Literal

from pydantic import Field

from pipelines.methods.adapter_dropout import use_adapter_dropout
from pipelines.methods.common import TrainedMethod
from pipelines.methods.fused_lora import use_fused_lora
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
        use_fused_lora(model)  # peft's adapter sum allocates 3 output-sized temporaries a layer; DoRA keeps peft's
        return model


class DoraMethod(LoraMethod):
    """Weight-decomposed LoRA (Liu et al., 2024): LoRA on the direction, a learned magnitude per column.
    Same hyperparameters as LoRA, but no dropout by default: with dropout, peft's DoRA runs every
    adapted layer's base matmul a second time on the dropped-out input."""

    name: Literal["dora"] = "dora"
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input (costs a second base matmul)")
    use_dora: ClassVar[bool] = True

    def apply(self, model):
        from peft.helpers import DoraCaching

        # Without the cache, every forward in eval mode (each generated token) rebuilds B@A and the
        # full weight norm of every adapted layer. peft caches only in eval mode and clears the cache
        # whenever the model goes back to training, so enabling it for the process is safe.
        DoraCaching()(enabled=True)
        return super().apply(model)
