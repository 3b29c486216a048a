"""Full fine-tuning: every weight trains; the saved model is a complete checkpoint."""
from typing import ClassVar, Literal

from pydantic import Field

from pipelines.methods.common import TrainedMethod


class FullMethod(TrainedMethod):
    """Train all parameters of the base model."""

    name: Literal["full"] = "full"
    learning_rate: float = Field(3e-5, gt=0, description="peak AdamW learning rate")

    artifact_kind: ClassVar[str] = "weights"

    def apply(self, model):
        model.requires_grad_(True)
        return model
