"""Zero-shot base model: nothing is trained; the reference every method must beat."""
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict


class BaseMethod(BaseModel):
    """Evaluate the pretrained model as it is, with no training."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["base"] = "base"

    trains: ClassVar[bool] = False
    # What the servable model carries: nothing, the base source alone rebuilds it.
    artifact_kind: ClassVar[str] = "none"

    def load_kwargs(self, device) -> dict:
        return {}

    def apply(self, model):
        # Frozen, so the cell counts 0 trainable parameters (the counts read requires_grad) for a
        # method that trains none; scoring runs without gradients either way.
        return model.requires_grad_(False)
