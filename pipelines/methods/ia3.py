"""IA3 (Liu et al., 2022): learned vectors that rescale keys, values and feed-forward activations."""
from typing import Literal

from pydantic import Field

from pipelines.methods.common import TrainedMethod
from pipelines.methods.peft_wrap import task_type, wrap


class Ia3Method(TrainedMethod):
    name: Literal["ia3"] = "ia3"
    learning_rate: float = Field(5e-3, gt=0, description="peak AdamW learning rate")
    target_modules: list[str] | None = Field(
        None, description="modules to rescale; None takes peft's mapping for the model's architecture")
    feedforward_modules: list[str] | None = Field(
        None, description="the subset of target_modules that are feed-forward (scaled on their input)")

    def apply(self, model):
        from peft import IA3Config

        config = IA3Config(target_modules=self.target_modules, feedforward_modules=self.feedforward_modules,
                           task_type=task_type(model))
        return wrap(model, config, self.name)
