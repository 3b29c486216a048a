"""The `hpo:` section of an experiment spec: what Optuna tunes, toward which metric, how it prunes.

Space keys are dotted paths of spec fields (`methods.0.r`, `train.batch_size`). A trial's spec is
the base spec with the sampled values set at those paths, validated again like any spec, so a
sampled value the spec would refuse fails the same way a hand-written one does. At load time
every key is tried with its bounds (or each of its choices): an unknown key or a value the
spec refuses fails there, before anything trains.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.tasks import get_task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatParam(_Strict):
    """`trial.suggest_float`: a real number in [low, high]."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = Field(False, description="sample on a log scale (learning rates, weight decay)")
    step: float | None = Field(None, gt=0, description="discretisation step (not with log)")

    @model_validator(mode="after")
    def _bounds(self):
        _check_bounds(self.low, self.high, self.log, self.step is not None)
        return self

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def probes(self) -> list[float]:
        # A value off the integers too, so a float range over an integer field fails at load.
        inside = [self.low + (self.high - self.low) / 3] if self.high > self.low and self.step is None else []
        return [self.low, self.high, *inside]


class IntParam(_Strict):
    """`trial.suggest_int`: an integer in [low, high]."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = Field(False, description="sample on a log scale (ranks, sizes)")
    step: int = Field(1, ge=1, description="spacing of the values (must stay 1 with log)")

    @model_validator(mode="after")
    def _bounds(self):
        _check_bounds(self.low, self.high, self.log, self.step != 1)
        return self

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def probes(self) -> list[int]:
        return [self.low, self.high]


class CategoricalParam(_Strict):
    """`trial.suggest_categorical`: one of a list of plain values."""

    type: Literal["categorical"]
    # bool before int: pydantic's smart union keeps YAML's own type either way.
    choices: list[bool | int | float | str | None] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self):
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"choices repeat a value: {self.choices}")
        return self

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, self.choices)

    def probes(self) -> list:
        return list(self.choices)


def _check_bounds(low, high, log: bool, stepped: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0, got {low}")
    if log and stepped:
        raise ValueError("log scale cannot be combined with step")


SearchParam = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]  # noqa: UP007


class MedianPrunerSettings(_Strict):
    """Stop a trial whose best validation score so far is worse than the median of the finished
    trials' scores at the same step (optuna.pruners.MedianPruner)."""

    type: Literal["median"] = "median"
    n_startup_trials: int = Field(2, ge=0, description="trials that must finish before any is pruned")
    n_warmup_steps: int = Field(0, ge=0, description="training steps before a trial can be pruned")

    def build(self):
        import optuna

        return optuna.pruners.MedianPruner(n_startup_trials=self.n_startup_trials, n_warmup_steps=self.n_warmup_steps)


class HyperbandPrunerSettings(_Strict):
    """Successive halving over several brackets of budgets (optuna.pruners.HyperbandPruner);
    the resource is training steps."""

    type: Literal["hyperband"] = "hyperband"
    min_resource: int = Field(1, ge=1, description="training steps every trial gets before it can be pruned")
    max_resource: int | Literal["auto"] = Field(
        "auto", description="training steps of a full trial; auto: the most any finished trial reported")
    reduction_factor: int = Field(3, ge=2, description="1/reduction_factor of the trials go on at each rung")

    def build(self):
        import optuna

        return optuna.pruners.HyperbandPruner(min_resource=self.min_resource, max_resource=self.max_resource,
                                              reduction_factor=self.reduction_factor)


class NoPrunerSettings(_Strict):
    """Every trial trains to the end of its budget."""

    type: Literal["none"] = "none"

    def build(self):
        import optuna

        return optuna.pruners.NopPruner()


PrunerSettings = Annotated[Union[MedianPrunerSettings, HyperbandPrunerSettings, NoPrunerSettings],  # noqa: UP007
                           Field(discriminator="type")]


class HpoSettings(_Strict):
    """An Optuna study over one cell of the spec (`mlflow run . -e hpo`)."""

    n_trials: int = Field(20, ge=1, description="the study's total of trials, shared by all its workers")
    metric: str = Field("rougeL", description="the objective: this metric of a trial's cell after its final eval")
    direction: Literal["maximize", "minimize"] = "maximize"
    pruner: PrunerSettings = Field(
        default_factory=NoPrunerSettings,
        description="`median`, `hyperband` or `none`, or a mapping with `type` and the pruner's settings")
    sampler_seed: int | None = Field(
        0, description="TPE sampler seed (reproducible with one worker); none: a fresh seed every run")
    space: dict[str, SearchParam] = Field(min_length=1, description="dotted spec path -> distribution")

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_by_name(cls, value: Any):
        return {"type": value} if isinstance(value, str) else value


# Discriminator values pydantic puts in error paths; config drops them so paths read like the YAML.
UNION_TAGS = {cls.model_fields["type"].default for cls in (MedianPrunerSettings, HyperbandPrunerSettings,
                                                            NoPrunerSettings)} | {"float", "int", "categorical"}


def validation_metrics(task: str) -> tuple[str, ...]:
    """What a validation during training scores, i.e. what a pruner can read."""
    return get_task(task).validation_scores
