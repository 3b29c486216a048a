"""One cell of a comparison grid: a (model, method, dataset) child run, read top to bottom.

load the base model as the task needs it -> apply the method -> train within the budget -> eval
loss, predict and score the eval split -> save what the method changed -> log metrics,
predictions and the task's servable model. The task (`pipelines.tasks`) is looked up once; the
cell never branches on it.
"""
from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import mlflow
import torch
from optuna import TrialPruned

from pipelines import distributed
from pipelines.cell_resume import journal_and_checkpoints, log_params, start_cell_run
from pipelines.checkpoint import Journal
from pipelines.config import ExperimentSpec, flatten
from pipelines.efficiency import mfu, peak_flops, training_flops_per_token
from pipelines.errors import one_line
from pipelines.methods.common import save_changed_weights
from pipelines.resources import ResourceMeter, bytes_on_disk, parameter_counts, release_freed_memory
from pipelines.runtime import autocast_dtype
from pipelines.sources.datasets import Splits
from pipelines.tasks import get_task
from pipelines.tasks.base import greater_is_better
from pipelines.tracked_data import log_splits
from pipelines.train import eval_loss, train
from pipelines.train_setup import prepared_for_training
from registry.promote import DATA_LICENCE_TAG, DATA_SOURCE_TAG
from registry.servables import log_servable


@dataclass
class CellResult:
    model: str
    dataset: str
    method: str
    status: str  # FINISHED, FAILED, or KILLED (pruned: `on_validation` raised optuna.TrialPruned)
    run_id: str
    metrics: dict = field(default_factory=dict)
    model_uri: str | None = None
    error: str | None = None
    pruned_at_step: int | None = None
    seed: int | None = None  # set when the spec lists `seeds`: this is one of the cell's runs

    @property
    def cell(self) -> str:
        return f"{self.model}/{self.method}/{self.dataset}"

    @property
    def label(self) -> str:
        return self.cell if self.seed is None else f"{self.cell} seed {self.seed}"


def cell_params(spec: ExperimentSpec, model_src, dataset, method) -> dict:
    """Every spec field that shaped this cell, as dotted params."""
    shared = spec.model_dump(mode="json", include={"name", "task", "seed", "train", "generation", "eval", "registry",
                                                   "language_modeling"})
    return flatten({**shared, "model": model_src.model_dump(), "dataset": dataset.model_dump(), "method": method.model_dump()})


def data_tags(dataset, splits: Splits) -> dict[str, str]:
    """Which copy of the data the cell read (a local file or a pinned hub set) and its licence:
    promotion copies these onto the registered version."""
    return {DATA_LICENCE_TAG: dataset.licence or "not stated",
            **{f"{DATA_SOURCE_TAG}.{split}": source for split, source in splits.sources.items()}}


def seed_of(spec: ExperimentSpec) -> int | None:
    """The seed that tells a cell's runs apart, when the spec trains each cell under several."""
    return spec.seed if spec.seeds else None


def reused_cell(run, spec: ExperimentSpec, model_src, dataset, method, position: str) -> CellResult:
    """A cell finished by an interrupted earlier grid, taken over as it is."""
    result = CellResult(model_src.name, dataset.name, method.name, "FINISHED", run.info.run_id,
                        metrics=dict(run.data.metrics), model_uri=run.data.tags["model_uri"], seed=seed_of(spec))
    print(f"\n[{position}] {result.label}: reusing finished run {run.info.run_id} of an interrupted grid", flush=True)
    return result


def _with_instruction(spec: ExperimentSpec, dataset) -> ExperimentSpec:
    """The dataset's own wording, for training, evaluation and serving alike."""
    if not dataset.instruction:
        return spec
    return spec.model_copy(update={"generation": spec.generation.model_copy(update={"instruction": dataset.instruction})})


def run_cell(spec: ExperimentSpec, model_src, dataset, method, splits: Splits, position: str = "",
             key: str = "", on_validation: Callable[[dict[str, float], int], None] | None = None,
             checkpoint_dir: Path | None = None) -> CellResult:
    """Train and score one cell as a nested run. `on_validation(scores, step)` is told every
    validation during training; if it raises optuna.TrialPruned the run ends KILLED with the
    tag `pruned_at_step`, any other exception fails the cell (FAILED, reason logged).

    With `checkpoint_dir`, training checkpoints there every `train.checkpoint_every_minutes`; a
    cell that finds a checkpoint there resumes it, in the MLflow run it was training in. The
    folder is removed when the cell finishes.

    Under torchrun this is rank 0's side; the others train the cell with it (`pipelines.follower`)."""
    if method.trains and distributed.active():
        distributed.send((spec, model_src, dataset, method, splits, checkpoint_dir))
    params = cell_params(spec, model_src, dataset, method)
    journal, checkpoints = journal_and_checkpoints(spec, params, splits, checkpoint_dir)
    result = CellResult(model_src.name, dataset.name, method.name, "FAILED", "", seed=seed_of(spec))
    label = result.label
    run = start_cell_run(label, checkpoints)
    result.run_id = run.info.run_id
    validated_at: list[int] = []  # steps seen by on_validation: the last one is where a trial was pruned

    def told(scores: dict[str, float], step: int) -> None:
        validated_at.append(step)
        on_validation(scores, step)

    try:
        print(f"\n[{position}] {label}", flush=True)
        log_params(params)
        mlflow.set_tags({"model": model_src.name, "dataset": dataset.name, "method": method.name, "cell_key": key,
                         **({"seed": str(result.seed)} if result.seed is not None else {}), **data_tags(dataset, splits)})
        log_splits(dataset.name, splits, scored_examples(spec, splits))  # the runs table's Dataset column
        metrics = _run(_with_instruction(spec, dataset), model_src, method, splits, journal, checkpoints,
                       told if on_validation else None)
        result.metrics = metrics["scalars"]
        result.model_uri = metrics["model_uri"]
        mlflow.set_tag("model_uri", result.model_uri)  # what a resumed grid needs to promote this cell
        result.status = "FINISHED"
        mlflow.end_run("FINISHED")
        if checkpoints is not None:
            checkpoints.clear()
    except TrialPruned as pruned:  # stopped on purpose by a tuning study: neither finished nor failed
        step = validated_at[-1] if validated_at else 0
        result.status, result.pruned_at_step, result.metrics = "KILLED", step, {"train_steps": step}
        print(f"[{position}] {label} pruned at step {step}: {pruned}", flush=True)
        mlflow.set_tags({"pruned_at_step": step, "stopped_by": "pruned"})
        mlflow.log_metric("train_steps", step, step=step)
        mlflow.end_run("KILLED")
    except Exception as exc:  # one failed cell must not stop the grid; the reason is logged on it
        result.error = one_line(exc)
        print(f"[{position}] {label} FAILED: {result.error}", flush=True)
        mlflow.set_tag("error", result.error)
        mlflow.log_text(traceback.format_exc(), "error.txt")
        mlflow.end_run("FAILED")
        if isinstance(exc, distributed.RankFailure):
            raise  # a rank died or failed alone: the job stops
    finally:
        if checkpoints is not None:
            checkpoints.release()
        release_freed_memory()
    return result


def scored_examples(spec: ExperimentSpec, splits: Splits):
    """The eval rows a cell scores: the eval split, capped by `eval.max_examples`."""
    return splits.eval[: spec.eval.max_examples] if spec.eval.max_examples else splits.eval


def _base_source(model_src) -> str:
    local = Path(model_src.source).expanduser()
    # A served model may load from another working directory: pin a local base to its absolute path.
    return str(local.resolve()) if local.is_dir() else model_src.source


def _run(spec: ExperimentSpec, model_src, method, splits: Splits, journal: Journal, checkpoints=None,
         on_validation=None) -> dict:
    task = get_task(spec.task)
    device = distributed.device(spec.train.device)
    eval_examples = scored_examples(spec, splits)
    with tempfile.TemporaryDirectory(prefix="cell-") as workdir:
        with ResourceMeter(device) as meter:  # the cost of the method itself, not of logging it
            fitted, scalars = _fit(task, spec, model_src, method, splits, eval_examples, device, journal, checkpoints,
                                   on_validation)
            predictions = _predict_and_score(task, fitted, spec, splits, eval_examples, device, scalars)
            saved = save_changed_weights(method, fitted.model, fitted.tokenizer, Path(workdir))
            scalars["saved_bytes"] = bytes_on_disk(saved) if saved else 0
            scalars["saved_mb"] = scalars["saved_bytes"] / 2**20
        scalars.update(meter.summary())
        mlflow.log_table(task.prediction_table(eval_examples, predictions), artifact_file="predictions.json")
        for name, figure in task.figures(fitted, predictions, eval_examples).items():
            mlflow.log_figure(figure, name)
            import matplotlib.pyplot as plt

            plt.close(figure)
        # The scores go to the run with the model, linked to it (registry/servables.py). They are
        # logged at the last training step, so that where a name also has a step history (tokens/s,
        # MFU) the run's value in the UI is this whole-run figure, not the last log window; the
        # model itself is of the step whose weights it holds.
        last_step = int(scalars.get("train_steps", 0))
        model_uri = log_servable(task.servable, base_source=_base_source(model_src), artifact_kind=method.artifact_kind,
                                 artifact_dir=saved, step=int(scalars.get("best_step", last_step)), metrics=scalars,
                                 metrics_step=last_step, **task.servable_kwargs(fitted, spec)).model_uri
    shown = (task.default_metric, "eval_loss", "wall_time_s", "peak_rss_mb")
    print("  " + "  ".join(f"{k} {scalars[k]:.4g}" for k in shown if k in scalars), flush=True)
    return {"scalars": scalars, "model_uri": model_uri}


def _fit(task, spec, model_src, method, splits: Splits, eval_examples, device, journal: Journal, checkpoints=None,
         on_validation=None):
    """The base model as the task loads it, wrapped by the method, trained within the budget."""
    torch.manual_seed(spec.seed)
    fitted = task.load(model_src, splits, spec, device, method.load_kwargs(device))
    fitted.model = method.apply(fitted.model)
    if distributed.is_main():
        _log_setup(fitted.logged)
    scalars: dict[str, float] = {**parameter_counts(fitted.model), **task.train_statistics(fitted, splits.train)}
    if not method.trains:
        return fitted, scalars
    train_set = task.encode(fitted, spec, splits.train)
    scalars["train_truncated_examples"] = truncated = sum(e.truncated for e in train_set)
    if truncated:
        print(f"  {truncated}/{len(train_set)} training examples truncated to {fitted.max_len} tokens")
    subset = (splits.validation or eval_examples)[: spec.train.eval_subset]
    amp = autocast_dtype(spec.train.precision, device)

    def validate(model, step: int):  # the model as it trains: a bf16 frozen base needs autocast to run at speed
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            predictions = task.predict(replace(fitted, model=model), spec, subset, validating=True)
        if predictions.outputs:  # what the model wrote at this step (a language model's fixed prompts)
            table = task.prediction_table(subset, predictions)
            journal.table({"step": [step] * len(predictions.outputs), **table}, "validation_samples.json")
        return task.score(fitted, predictions, subset)

    flops_per_token = training_flops_per_token(
        fitted.model, sum(e.n_tokens for e in train_set) / max(1, len(train_set)),
        head_share=task.head_share(fitted.model, train_set))
    peak = peak_flops(device, amp or torch.float32) * distributed.world_size()  # each process's share of the machine
    smoothing = spec.train.label_smoothing
    with prepared_for_training(fitted.model, method.train_settings(spec.train), amp):  # bf16 base, checkpointing
        fit = train(
            fitted.model, train_set, spec.train, collate=task.collate,
            loss=partial(task.loss, label_smoothing=smoothing) if smoothing else task.loss,
            learning_rate=method.learning_rate, weight_decay=method.weight_decay, seed=spec.seed,
            pad_id=fitted.tokenizer.pad_token_id, device=device, amp_dtype=amp,
            log=journal.metrics, validate=validate, on_validation=on_validation, flops_per_token=flops_per_token,
            peak_flops=peak, greater_is_better=greater_is_better(task, spec.train.select_metric),
            checkpoints=checkpoints, loss_weight=task.loss_weight,
        )
    journal.flush()
    scalars.update(train_steps=fit.steps, train_examples=fit.examples, train_tokens=fit.tokens,
                   train_time_s=fit.train_time_s, train_tokens_per_s=fit.tokens_per_s,
                   train_examples_per_s=fit.examples / max(fit.train_time_s, 1e-9),
                   train_flops_per_token=flops_per_token, peak_flops=peak, padding_share=fit.padding_share,
                   mfu=mfu(fit.tokens_per_s, flops_per_token, peak))
    if fit.best_step is not None:
        scalars.update(best_step=fit.best_step, best_val_score=fit.best_value)
    if distributed.is_main():
        mlflow.set_tag("stopped_by", fit.stopped_by)
    return fitted, scalars


def _log_setup(logged: dict) -> None:
    """What the task's set-up asks to keep with the run (a trained tokenizer: its cache key, its files)."""
    artifacts = logged.get("artifacts", {})
    params = {k: v for k, v in logged.items() if k != "artifacts"}
    if params:
        log_params(params)
    for artifact_path, folder in artifacts.items():
        mlflow.log_artifacts(folder, artifact_path)


def _predict_and_score(task, fitted, spec, splits: Splits, eval_examples, device, scalars: dict):
    """Eval loss (teacher forcing) against the same loss on as much training data, then the task's
    predictions and scores, into `scalars`."""
    encoded = task.encode(fitted, spec, eval_examples)
    trained_on = task.encode(fitted, spec, splits.train[: len(eval_examples)])
    # Evenly spaced training examples (or blocks), as many as the eval part has.
    trained_on = trained_on[:: max(1, len(trained_on) // max(1, len(encoded)))][: len(encoded)]
    losses = {}
    for name, examples in (("eval_loss", encoded), ("train_eval_loss", trained_on)):
        losses[name] = eval_loss(fitted.model, examples, collate=task.collate, loss=task.loss,
                                 weight=task.loss_weight, batch_size=spec.eval.scoring_batch(spec.generation),
                                 pad_id=fitted.tokenizer.pad_token_id, device=device)
    scalars.update(losses, overfitting_ratio=losses["eval_loss"] / max(losses["train_eval_loss"], 1e-12),
                   generalisation_gap=losses["eval_loss"] - losses["train_eval_loss"])
    started = time.perf_counter()
    print(f"  predicting {len(eval_examples)} eval examples", flush=True)
    predictions = task.predict(fitted, spec, eval_examples,
                               progress=lambda done, total: print(f"  predicted {done}/{total}", flush=True))
    scalars["eval_time_s"] = time.perf_counter() - started
    scalars.update(task.score(fitted, predictions, eval_examples))
    scalars.update(predictions.scalars)
    if "chars_per_token" in scalars and "train_tokens_per_s" in scalars:  # a text task's throughput in characters
        scalars["train_chars_per_s"] = scalars["train_tokens_per_s"] * scalars["chars_per_token"]
    return predictions
