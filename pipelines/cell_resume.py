"""How a grid cell keeps and finds its checkpoints: where they go, the journal that holds its
metrics until a checkpoint covers them, the MLflow run a checkpoint belongs to, and params logged
again into a continued run. The cell (`pipelines/cell.py`) and the ranks that follow it under
torchrun (`pipelines/follower.py`) share them."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import mlflow

from pipelines.checkpoint import Checkpointer, Journal
from pipelines.errors import one_line
from pipelines.sources.datasets import Splits, data_fingerprint
from pipelines.train_settings import RESUMABLE_CHANGES


def cell_checkpoint_dir(spec, label: str) -> Path:
    """Where a grid cell's checkpoints go: by spec, tracking store and cell, so that a rerun of the
    spec against the same store finds them, and a job logging to another store (another user's
    server, a throwaway sqlite file) in the same project never takes them for its own."""
    slug = lambda text: re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    return Path(spec.train.checkpoint_dir) / slug(spec.name) / store_folder() / slug(label.replace("/", "__"))


def store_folder() -> str:
    """`store-<8 hex digits>`: the tracking URI hashed (it may hold a host or a password)."""
    return "store-" + hashlib.sha1(mlflow.get_tracking_uri().encode()).hexdigest()[:8]


def journal_and_checkpoints(spec, params: dict, splits: Splits, directory: Path | None, leads: bool = True):
    """(journal, checkpoints): the cell's metrics go through the journal, which holds them back
    until a checkpoint covers them when the cell keeps checkpoints (else None). A rank that does
    not lead (under torchrun) logs nothing and only reads the checkpoints."""
    keeps = directory is not None and spec.train.checkpoint_every_minutes is not None
    journal = Journal(lambda metrics, step, timestamp: mlflow.log_metrics(metrics, step=step, timestamp=timestamp),
                      lambda data, name: mlflow.log_table(data, artifact_file=name), deferred=keeps and leads)
    if not leads:
        journal = Journal(lambda metrics, step, timestamp: None, lambda data, name: None, deferred=False)
    if not keeps:
        return journal, None
    fingerprint = {k: v for k, v in params.items() if k not in RESUMABLE_CHANGES}
    fingerprint["data"] = data_fingerprint(splits.train + splits.eval)
    return journal, Checkpointer(directory, spec.train.checkpoint_every_minutes * 60, fingerprint, journal,
                                 reads_only=not leads)


def start_cell_run(label: str, checkpoints: Checkpointer | None):
    """The cell's nested run: the run a killed process was training it in, continued, or a new one
    (claimed in the checkpoint folder before anything is trained)."""
    if checkpoints is not None:
        checkpoints.hold()
    saved = _run_to_continue(checkpoints) if checkpoints is not None else None
    if saved:
        run = mlflow.start_run(run_id=saved, nested=True, log_system_metrics=True)
        print(f"  continuing run {saved} from its checkpoint in {checkpoints.directory}", flush=True)
        return run
    run = mlflow.start_run(run_name=label, nested=True, log_system_metrics=True)
    if checkpoints is not None:
        checkpoints.claim(run.info.run_id)
    return run


def _run_to_continue(checkpoints: Checkpointer) -> str | None:
    """The run the folder names, if it is to go on: it still has checkpoints, or it was killed
    before its first (still RUNNING). One that FINISHED left its folder behind (killed before the
    folder was removed): the folder is removed and the cell trains in a new run."""
    saved = checkpoints.saved_run_id()
    if not saved:
        return None
    try:
        status = mlflow.MlflowClient().get_run(saved).info.status
    except mlflow.exceptions.MlflowException as exc:
        print(f"  run {saved} of the checkpoint is gone ({one_line(exc)}): resuming in a new run", flush=True)
        return None
    if status == "FINISHED":
        print(f"  run {saved} of the checkpoint in {checkpoints.directory} had finished: training afresh", flush=True)
        checkpoints.clear()
        return None
    return saved if checkpoints.files() or status == "RUNNING" else None


def log_params(params: dict) -> None:
    """Log params; in a run continued from a checkpoint, only the new ones: MLflow params cannot
    change, and what may differ on resume (a longer `train.max_minutes`, a tokenizer now read from
    its cache) is tagged `resumed_with.<param>` instead."""
    logged = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    changed = {k: str(v) for k, v in params.items() if k in logged and logged[k] != str(v)}
    fresh = {k: v for k, v in params.items() if k not in logged}
    if fresh:
        mlflow.log_params(fresh)
    if changed:
        mlflow.set_tags({f"resumed_with.{k}": v for k, v in changed.items()})
