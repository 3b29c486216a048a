"""Full fine-tuning: every weight trains; the saved model is a complete checkpoint."""
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class FullMethod(BaseModel):
    """Train all parameters of the base model."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["full"] = "full"
    learning_rate: float = Field(3e-5, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")

    trains: ClassVar[bool] = True
    artifact_kind: ClassVar[str] = "weights"

    def load_kwargs(self, device) -> dict:
        return {}

    def apply(self, model):
        model.requires_grad_(True)
        return model
