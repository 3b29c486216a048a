"""What every trained method's config shares: strict keys, optimizer settings, no special loading;
and how what a method changed is saved."""
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class TrainedMethod(BaseModel):
    """Fields and defaults common to trained methods; a method overrides `learning_rate`'s default
    where its usual range differs (LoRA ~1e-3, prompt tuning ~3e-2, full fine-tuning ~5e-5)."""

    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(1e-3, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")

    trains: ClassVar[bool] = True
    artifact_kind: ClassVar[str] = "adapter"  # what the servable model stores: "adapter" or "weights"

    def load_kwargs(self, device) -> dict:
        """Extra `from_pretrained` arguments this method needs for the base model (QLoRA: 4-bit)."""
        return {}

    def train_settings(self, settings):
        """The grid's training settings as this method trains under them (QLoRA turns on
        gradient checkpointing); the budget and batch shape are never changed."""
        return settings


def save_changed_weights(method, model, tokenizer, workdir: Path) -> str | None:
    """Save what the method changed under `workdir`: nothing (base), the adapter (a PeftModel
    writes only its adapter, and a new classification head with it), or full weights."""
    if method.artifact_kind == "none":
        return None
    out = Path(workdir) / method.artifact_kind
    model.save_pretrained(out)
    if method.artifact_kind == "weights":  # an adapter reuses the base model's tokenizer
        tokenizer.save_pretrained(out)
    return str(out)
