"""Prefix tuning (Li & Liang, 2021) and prompt tuning (Lester et al., 2021): trained virtual
tokens, as key/value prefixes in every layer or as input embeddings. The base model is untouched,
so these adapters cannot be merged into it; they are applied at serving time."""
from typing import Literal

from pydantic import Field

from pipelines.methods.common import TrainedMethod
from pipelines.methods.peft_wrap import task_type, wrap


class PrefixMethod(TrainedMethod):
    name: Literal["prefix"] = "prefix"
    learning_rate: float = Field(5e-3, gt=0, description="peak AdamW learning rate")
    num_virtual_tokens: int = Field(16, ge=1, description="prefix length in every layer")
    projection: bool = Field(False, description="reparameterise the prefix through an MLP (more stable, bigger)")

    def apply(self, model):
        from peft import PrefixTuningConfig

        config = PrefixTuningConfig(num_virtual_tokens=self.num_virtual_tokens, prefix_projection=self.projection,
                                    task_type=task_type(model))
        return wrap(model, config, self.name)


class PromptMethod(TrainedMethod):
    name: Literal["prompt"] = "prompt"
    learning_rate: float = Field(3e-2, gt=0, description="peak AdamW learning rate")
    num_virtual_tokens: int = Field(16, ge=1, description="soft prompt length")
    init_text: str | None = Field(
        None, description="initialise the soft prompt from this text's embeddings (random when absent)")

    def apply(self, model):
        from peft import PromptTuningConfig

        init = {"prompt_tuning_init": "RANDOM"}
        if self.init_text:
            init = {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": self.init_text,
                    "tokenizer_name_or_path": model.config.name_or_path}
        config = PromptTuningConfig(num_virtual_tokens=self.num_virtual_tokens, task_type=task_type(model), **init)
        return wrap(model, config, self.name)
