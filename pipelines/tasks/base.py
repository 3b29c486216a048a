"""The task protocol: what a task (summarization, classification, ...) tells the rest of the
platform, so that the cell, the grid, `evaluate`, `hpo` and the report never branch on its name.

A task is one module with one class implementing `Task`; `pipelines.tasks.get_task` looks the
spec's `task` up once. Adding a task means adding its module, registering it in
`pipelines/tasks/__init__.py`, its spec section (if any) and its tests.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from pipelines.sources.datasets import Example, Splits


@dataclass(frozen=True)
class Score:
    """One figure a task reports, and which way is better."""

    name: str
    label: str  # column header in the report
    greater_is_better: bool = True
    points: float | None = 100.0  # to "points" in the report's prose: 100 for 0-1 scores, 1 for BLEU (0-100),
    # None for a figure in its own units (a loss, a perplexity, bits per byte)


@dataclass
class Fitted:
    """What a task's model set-up hands the cell: the model with its tokenizer, and the prompt or
    input budget in tokens that serving must keep to."""

    model: torch.nn.Module
    tokenizer: Any
    max_len: int
    context: dict = field(default_factory=dict)  # task-private (e.g. the label list)
    logged: dict = field(default_factory=dict)  # params the cell logs with the run (e.g. a trained tokenizer's
    # cache key), and under "artifacts", {artifact path: local folder} it logs as artifacts


@dataclass
class Predictions:
    """A task's outputs on some examples: one value per example, plus any per-example extras
    (probabilities, truncation flags) and scalars the prediction itself measured."""

    outputs: list
    extras: dict[str, list] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)


class Task(Protocol):
    name: str
    scores: tuple[Score, ...]
    """Every score the task reports, in the report's column order."""
    default_metric: str
    """What picks the best cell and decides on `champion` when the spec's registry does not say."""
    validation_scores: tuple[str, ...]
    """The scores a validation during training computes (what `select_metric` and a pruner may read)."""
    registered_model_name: str
    """The registry name a spec without a `registry` section promotes to."""
    input_column: str
    """The served model's input column."""
    served_output: str
    """The served model's output column: how `evaluate` knows a model logged before configs named the task."""
    target_is_label: bool
    """Whether a row's target is one class label (else one or more reference texts)."""

    def check_spec(self, spec) -> None:
        """Refuse a spec the task cannot run (ValueError with the field path)."""

    def load_splits(self, dataset, spec) -> Splits:
        """Read, validate and split one dataset entry of the spec (its seed, its task section)."""

    def describe_splits(self, splits: Splits) -> str:
        """A few words about the splits for the `[data]` line (e.g. the label set)."""

    def load(self, model_src, splits: Splits, spec, device: torch.device, load_kwargs: dict) -> Fitted:
        """The base model of the spec's `model_src` for this task (with a new head where the task
        needs one; built and its tokenizer trained on `splits.train` for a `scratch` source)."""

    def reference_scores(self, splits: Splits) -> dict[str, dict[str, float]]:
        """Figures of simple baselines on these splits, by name (e.g. {"xz -9": {"bits_per_char": 2.4}}),
        reported beside the cells so a score means something; {} where the task has none."""

    def train_statistics(self, fitted: Fitted, examples: list[Example]) -> dict[str, float]:
        """Figures about the training data as the model sees it (e.g. tokenizer statistics)."""

    def encode(self, fitted: Fitted, spec, examples: list[Example]) -> list:
        """Training examples: objects with `n_tokens`, as `collate` takes them."""

    def collate(self, batch: list, pad_id: int) -> dict[str, torch.Tensor]: ...

    def loss(self, model, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0) -> torch.Tensor: ...

    def loss_weight(self, batch: dict[str, torch.Tensor]) -> int:
        """What the batch's mean loss averages over (target tokens, or examples): eval_loss's weight."""

    def head_share(self, model, encoded: list) -> float:
        """Share of the tokens at which the loss runs the output head (FLOP counting)."""

    def predict(self, fitted: Fitted, spec, examples: list[Example], progress: Callable[[int, int], None] | None = None,
                validating: bool = False) -> Predictions:
        """The task's outputs (`validating`: the cheaper settings of a validation during training)."""

    def score(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict[str, float]: ...

    def prediction_table(self, examples: list[Example], predictions: Predictions) -> dict[str, list]:
        """The predictions as columns, logged as the run's `predictions.json` table."""

    def figures(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict:
        """Artifact name -> matplotlib figure (e.g. a confusion matrix)."""

    servable: str
    """Which servable pyfunc of `registry/` logs the model (`registry.servables`)."""

    def servable_kwargs(self, fitted: Fitted, spec) -> dict:
        """What that pyfunc needs beyond the base source and the saved weights."""

    def served_examples(self, examples: list[Example], config: dict, label_map: dict[str, str],
                        drop_labels: list[str], data: str) -> list[Example]:
        """`evaluate`: the rows as the served model (its logged `config`) can be scored on them."""

    def score_served(self, out, examples: list[Example], config: dict) -> tuple[dict, dict, dict]:
        """`evaluate`: (scores, prediction columns, figures) of the served model's answers `out`."""


def pretrained_only(spec, task_name: str) -> None:
    """A task whose models start from pretrained weights refuses a `scratch` source, in check_spec."""
    for i, model in enumerate(spec.models):
        if getattr(model, "scratch", None) is not None:
            raise ValueError(f"models.{i}: a scratch model (built with its own tokenizer from the train text) "
                             f"is for task language_modeling; {task_name} starts from a pretrained source")


def score_of(task: Task, name: str) -> Score | None:
    return next((s for s in task.scores if s.name == name), None)


def greater_is_better(task: Task, name: str) -> bool:
    """A metric's direction; losses and error rates that are not a task score are lower-is-better."""
    found = score_of(task, name)
    return found.greater_is_better if found else not any(k in name for k in ("loss", "perplexity", "ece", "error"))

