"""What `peft_compare` and `hpo` check before anything trains: the device, every dataset read,
validated and split, every model source found. A missing device, bad data or an unknown model then
fails in seconds, not after the first cell has trained for minutes."""
from __future__ import annotations

from collections.abc import Callable

from pipelines.runtime import check_device
from pipelines.sources.datasets import Splits
from pipelines.sources.models import resolve_model
from pipelines.tasks import get_task


def resolve_inputs(spec, load: Callable | None = None) -> dict[str, Splits]:
    """The splits of every dataset of `spec` by name (read by `load(dataset)`, default the
    task's loader), each announced with where it was read from; then every model resolved."""
    check_device(spec.train.device, "train.device")  # before any data is read or model loaded
    task = get_task(spec.task)
    load = load or (lambda dataset: task.load_splits(dataset, spec))
    splits = {}
    for dataset in spec.datasets:
        splits[dataset.name] = found = load(dataset)
        read = ", ".join(f"{split} from {source}" for split, source in found.sources.items())
        print(f"[data] {dataset.name}: {len(found.train)} train / {len(found.eval)} eval rows"
              f"{task.describe_splits(found)} ({read})", flush=True)
    for model in spec.models:
        if model.scratch is None:  # a scratch model is built from its config, from nothing to resolve
            resolve_model(model.source)
    return splits
