"""One cell of a comparison grid: a (model, method, dataset) child run, read top to bottom.

load the base model -> apply the method -> train within the budget -> generate on the eval
split -> score -> save what the method changed -> log metrics, predictions and a servable model.
"""
from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import torch
from optuna import TrialPruned

from pipelines import cell_classification
from pipelines.config import ExperimentSpec, flatten
from pipelines.efficiency import mfu, peak_flops, training_flops_per_token
from pipelines.errors import PlatformError
from pipelines.methods.common import save_changed_weights
from pipelines.metrics import summarization_scores
from pipelines.resources import ResourceMeter, bytes_on_disk, parameter_counts, release_freed_memory
from pipelines.runtime import autocast_dtype, pick_device
from pipelines.sources.datasets import Splits
from pipelines.sources.models import is_seq2seq, load_lm
from pipelines.tasks.summarization import encode_for_training, generate_summaries, head_share
from pipelines.train import eval_loss, train
from pipelines.train_setup import prepared_for_training
from registry.promote import DATA_LICENCE_TAG, DATA_SOURCE_TAG
from registry.summarizer import log_summarizer


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

    @property
    def label(self) -> str:
        return f"{self.model}/{self.method}/{self.dataset}"


def cell_params(spec: ExperimentSpec, model_src, dataset, method) -> dict:
    """Every spec field that shaped this cell, as dotted params."""
    shared = spec.model_dump(mode="json", include={"name", "task", "seed", "train", "generation", "eval", "registry"})
    return flatten({**shared, "model": model_src.model_dump(), "dataset": dataset.model_dump(), "method": method.model_dump()})


def data_tags(dataset, splits: Splits) -> dict[str, str]:
    """Which copy of the data the cell read (a local file or a pinned hub set) and its licence:
    promotion copies these onto the registered version."""
    return {DATA_LICENCE_TAG: dataset.licence or "not stated",
            **{f"{DATA_SOURCE_TAG}.{split}": source for split, source in splits.sources.items()}}


def reused_cell(run, model_src, dataset, method, position: str) -> CellResult:
    """A cell finished by an interrupted earlier grid, taken over as it is."""
    label = f"{model_src.name}/{method.name}/{dataset.name}"
    print(f"\n[{position}] {label}: reusing finished run {run.info.run_id} of an interrupted grid", flush=True)
    return CellResult(model_src.name, dataset.name, method.name, "FINISHED", run.info.run_id,
                      metrics=dict(run.data.metrics), model_uri=run.data.tags["model_uri"])


def run_cell(spec: ExperimentSpec, model_src, dataset, method, splits: Splits, position: str = "",
             key: str = "", on_validation: Callable[[dict[str, float], int], None] | None = None) -> CellResult:
    """Train and score one cell as a nested run. `on_validation(scores, step)` is told every
    validation during training; if it raises optuna.TrialPruned the run ends KILLED with the
    tag `pruned_at_step`, any other exception fails the cell (FAILED, reason logged)."""
    label = f"{model_src.name}/{method.name}/{dataset.name}"
    run = mlflow.start_run(run_name=label, nested=True, log_system_metrics=True)
    result = CellResult(model_src.name, dataset.name, method.name, "FAILED", run.info.run_id)
    validated_at: list[int] = []  # steps seen by on_validation: the last one is where a trial was pruned

    def told(scores: dict[str, float], step: int) -> None:
        validated_at.append(step)
        on_validation(scores, step)

    try:
        print(f"\n[{position}] {label}", flush=True)
        mlflow.log_params(cell_params(spec, model_src, dataset, method))
        mlflow.set_tags({"model": model_src.name, "dataset": dataset.name, "method": method.name, "cell_key": key,
                         **data_tags(dataset, splits)})
        if dataset.instruction:  # the dataset's own wording, for training, evaluation and serving alike
            spec = spec.model_copy(update={"generation": spec.generation.model_copy(
                update={"instruction": dataset.instruction})})
        metrics = _run(spec, model_src, method, splits, told if on_validation else None)
        result.metrics = metrics["scalars"]
        result.model_uri = metrics["model_uri"]
        mlflow.set_tag("model_uri", result.model_uri)  # what a resumed grid needs to promote this cell
        result.status = "FINISHED"
        mlflow.end_run("FINISHED")
    except TrialPruned as pruned:  # stopped on purpose by a tuning study: neither finished nor failed
        step = validated_at[-1] if validated_at else 0
        result.status, result.pruned_at_step, result.metrics = "KILLED", step, {"train_steps": step}
        print(f"[{position}] {label} pruned at step {step}: {pruned}", flush=True)
        mlflow.set_tags({"pruned_at_step": step, "stopped_by": "pruned"})
        mlflow.log_metric("train_steps", step, step=step)
        mlflow.end_run("KILLED")
    except Exception as exc:  # one failed cell must not stop the grid; the reason is logged on it
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0] if not isinstance(exc, PlatformError) else str(exc)
        print(f"[{position}] {label} FAILED: {result.error}", flush=True)
        mlflow.set_tag("error", result.error)
        mlflow.log_text(traceback.format_exc(), "error.txt")
        mlflow.end_run("FAILED")
    finally:
        release_freed_memory()
    return result


def _base_source(model_src) -> str:
    local = Path(model_src.source).expanduser()
    # A served model may load from another working directory: pin a local base to its absolute path.
    return str(local.resolve()) if local.is_dir() else model_src.source


def _run(spec: ExperimentSpec, model_src, method, splits: Splits, on_validation=None) -> dict:
    device = pick_device(spec.train.device)
    eval_examples = splits.eval[: spec.eval.max_examples] if spec.eval.max_examples else splits.eval
    classification = spec.task == "classification"
    with tempfile.TemporaryDirectory(prefix="cell-") as workdir:
        with ResourceMeter(device) as meter:  # the cost of the method itself, not of logging it
            if classification:
                scalars, outputs = cell_classification.fit_and_predict(spec, model_src, method, splits, eval_examples,
                                                                       device, Path(workdir), on_validation)
            else:
                scalars, predictions, saved = _fit_and_predict(spec, model_src, method, splits.train, eval_examples,
                                                               device, Path(workdir), on_validation)
        scalars.update(meter.summary())
        # At the last training step, so that where a name also has a step history (tokens/s, MFU)
        # the run's value in the UI is this whole-run figure, not the last log window.
        mlflow.log_metrics(scalars, step=int(scalars.get("train_steps", 0)))
        if classification:
            model_uri = cell_classification.log_outputs(model_src, method, eval_examples, outputs,
                                                        _base_source(model_src))
        else:
            mlflow.log_table(
                {"row": [ex.row for ex in eval_examples], "dialogue": [ex.text for ex in eval_examples],
                 "reference": [ex.references[0] for ex in eval_examples], "prediction": predictions},
                artifact_file="predictions.json",
            )
            model_uri = log_summarizer(base_source=_base_source(model_src), artifact_kind=method.artifact_kind,
                                       artifact_dir=saved, generation=spec.generation,
                                       max_prompt_tokens=spec.train.max_seq_len).model_uri
    shown = ("accuracy", "f1_macro") if classification else ("rougeL", "bleu")
    shown += ("wall_time_s", "peak_rss_mb")
    print("  " + "  ".join(f"{k} {scalars[k]:.4g}" for k in shown if k in scalars), flush=True)
    return {"scalars": scalars, "model_uri": model_uri}


def _fit_and_predict(spec, model_src, method, train_examples, eval_examples, device, workdir: Path,
                     on_validation=None):
    gen = spec.generation
    scalars: dict[str, float] = {}
    torch.manual_seed(spec.seed)
    model, tokenizer, _ = load_lm(model_src.source, device=device, **method.load_kwargs(device))
    model = method.apply(model)
    scalars.update(parameter_counts(model))
    pad_id = tokenizer.pad_token_id

    seq2seq = is_seq2seq(model)

    def encode(ex):
        return encode_for_training(tokenizer, gen.instruction, ex.text, ex.references[0],
                                   spec.train.max_seq_len, spec.train.max_target_tokens, seq2seq=seq2seq)

    if method.trains:
        train_set = [encode(ex) for ex in train_examples]
        scalars["train_truncated_examples"] = truncated = sum(e.truncated for e in train_set)
        if truncated:
            print(f"  {truncated}/{len(train_set)} training dialogues truncated to max_seq_len={spec.train.max_seq_len}")
        subset = eval_examples[: spec.train.eval_subset]

        amp = autocast_dtype(spec.train.precision, device)

        def validate(m):  # the model as it trains: a bf16 base needs autocast to run at speed
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                predictions = generate_summaries(m, tokenizer, gen.instruction, [ex.text for ex in subset],
                                                 gen.max_new_tokens, gen.batch_size,
                                                 max_prompt_tokens=spec.train.max_seq_len)
            return summarization_scores(predictions, [list(ex.references) for ex in subset])

        flops_per_token = training_flops_per_token(model, sum(e.n_tokens for e in train_set) / max(1, len(train_set)),
                                                   head_share=head_share(model, train_set))
        peak = peak_flops(device, amp or torch.float32)
        with prepared_for_training(model, method.train_settings(spec.train), amp):  # bf16 base, checkpointing, compile
            fit = train(
                model, train_set, spec.train, learning_rate=method.learning_rate, weight_decay=method.weight_decay,
                seed=spec.seed, pad_id=pad_id, device=device, amp_dtype=amp,
                log=lambda metrics, step: mlflow.log_metrics(metrics, step=step), validate=validate,
                on_validation=on_validation, flops_per_token=flops_per_token, peak_flops=peak,
            )
        scalars.update(train_steps=fit.steps, train_examples=fit.examples, train_tokens=fit.tokens,
                       train_time_s=fit.train_time_s, train_tokens_per_s=fit.tokens_per_s,
                       train_flops_per_token=flops_per_token, peak_flops=peak, padding_share=fit.padding_share,
                       mfu=mfu(fit.tokens_per_s, flops_per_token, peak))
        if fit.best_step is not None:
            scalars.update(best_step=fit.best_step, best_val_score=fit.best_value)
        mlflow.set_tag("stopped_by", fit.stopped_by)
    scalars["eval_loss"] = eval_loss(model, [encode(ex) for ex in eval_examples], gen.batch_size, pad_id, device)
    started = time.perf_counter()
    print(f"  generating {len(eval_examples)} summaries", flush=True)
    predictions = generate_summaries(
        model, tokenizer, gen.instruction, [ex.text for ex in eval_examples], gen.max_new_tokens, gen.batch_size,
        gen.num_beams, max_prompt_tokens=spec.train.max_seq_len,
        progress=lambda done, total: print(f"  generated {done}/{total}", flush=True),
    )
    scalars["eval_time_s"] = time.perf_counter() - started
    scalars.update(summarization_scores(predictions, [list(ex.references) for ex in eval_examples]))
    saved = save_changed_weights(method, model, tokenizer, workdir)
    scalars["saved_bytes"] = bytes_on_disk(saved) if saved else 0
    scalars["saved_mb"] = scalars["saved_bytes"] / 2**20
    return scalars, predictions, saved
