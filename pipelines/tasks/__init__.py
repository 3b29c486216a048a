"""Task-specific data handling: summarization and classification."""
from __future__ import annotations


def load_task_splits(dataset, seed: int, task: str):
    """A dataset's splits as the task reads them: reference texts for summarization; for
    classification, labels mapped, dropped and checked against the label set."""
    from pipelines.sources.datasets import load_splits

    if task != "classification":
        return load_splits(dataset, seed)
    from pipelines.tasks.classification import prepare_labels

    return prepare_labels(load_splits(dataset, seed, labels=True), dataset)
