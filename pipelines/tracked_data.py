"""Which data a run saw, as MLflow dataset inputs: the Dataset column of the runs table.

Each part of the data is logged with `mlflow.log_input` under the name `<dataset>/<split>`, with
where it was read from, its row count (the dataset's profile) and a context: `training`,
`validation` (scored while training, to pick the best step) or `evaluation` (the rows the run's
scores come from). The digest is `data_fingerprint` of the examples, the same hash a resumed grid
keys its cells by, so two runs with equal digests saw the same rows and scores on them compare.
A grid cell and the `evaluate` entry point log through `log_examples`; promotion reads the
evaluation input back with `evaluation_input`.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from pipelines.sources.datasets import Example, Splits, data_fingerprint, hub_parts

TRAINING, VALIDATION, EVALUATION = "training", "validation", "evaluation"
CONTEXTS = {"train": TRAINING, "validation": VALIDATION, "eval": EVALUATION}  # a Splits part -> its context
SOURCE_TAG = "source"  # the input's tag holding the source as the spec or command line named it


@dataclass(frozen=True)
class TrackedData:
    """A dataset input read back off a run."""

    name: str
    digest: str
    source: str
    rows: int | None


def as_dataset(examples: list[Example], name: str, source: str) -> PandasDataset:
    """The examples as an MLflow dataset. The frame only carries the schema and row count into the
    run (MLflow stores no rows); the digest is ours, not MLflow's hash of the frame, so it equals
    the fingerprint the rest of the platform compares."""
    frame = pd.DataFrame({"text": [ex.text for ex in examples], "references": [list(ex.references) for ex in examples]})
    return mlflow.data.from_pandas(frame, source=_source(source), name=name, digest=data_fingerprint(examples))


def log_examples(examples: list[Example], name: str, source: str, context: str) -> PandasDataset:
    """Log the examples as an input of the active run; returns the dataset, for metrics scored on it."""
    dataset = as_dataset(examples, name, source)
    for attempt in range(3):
        try:
            mlflow.log_input(dataset, context=context, tags={SOURCE_TAG: source})
            break
        except MlflowException as exc:
            # MLflow's SQL store looks a dataset up, then inserts it: two runs logging the same
            # data at once (two grids on one server) race, and the loser hits the unique key.
            # Asked again, it finds the winner's row and only links it.
            if attempt == 2 or not _lost_insert_race(exc):
                raise
    return dataset


def _lost_insert_race(exc: MlflowException) -> bool:
    message = str(exc)
    return "dataset_pk" in message or "UniqueViolation" in message or "UNIQUE constraint failed: datasets" in message


def log_splits(dataset_name: str, splits: Splits, scored: list[Example]) -> None:
    """Every part of a cell's data. `scored` is the part of the eval split the cell scores (all of
    it unless `eval.max_examples` caps it): that, not the whole split, is what its scores are on."""
    parts = {"train": splits.train, "validation": splits.validation, "eval": scored}
    for split, examples in parts.items():
        if examples is None:
            continue
        source = splits.sources.get(split, "")
        if split == "eval" and len(scored) < len(splits.eval):
            source += f" (first {len(scored)} of {len(splits.eval)})"
        log_examples(examples, f"{dataset_name}/{split}", source, CONTEXTS[split])


def evaluation_input(run) -> TrackedData | None:
    """The data `run` was scored on: its input logged with context `evaluation`, or None for a run
    logged before runs recorded their data."""
    for found in (run.inputs.dataset_inputs if run.inputs else []):
        tags = {tag.key: tag.value for tag in found.tags}
        if tags.get(MLFLOW_DATASET_CONTEXT) == EVALUATION:
            profile = json.loads(found.dataset.profile) if found.dataset.profile else {}
            return TrackedData(found.dataset.name, found.dataset.digest,
                               tags.get(SOURCE_TAG, found.dataset.source), profile.get("num_rows"))
    return None


def _source(text: str):
    """MLflow's own source for where the rows came from: a hub set as a Hugging Face source, a file
    as a local one; anything else (a packaged set, a held-out part, a file left behind) by its text."""
    if text.startswith("hf:") and " " not in text:
        name, split, revision = hub_parts(text)
        return HuggingFaceDatasetSource(path=name, split=split, revision=revision)
    if Path(text).expanduser().is_file():
        with warnings.catch_warnings():  # MLflow registers its local source twice and warns it may be either
            warnings.simplefilter("ignore")
            return resolve_dataset_source(str(Path(text).expanduser().resolve()))
    return CodeDatasetSource({SOURCE_TAG: text})
