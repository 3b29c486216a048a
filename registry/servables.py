"""Which servable pyfunc logs a task's model: a task names it (`Task.servable`), the cell asks
here. Kept in `registry/` so that tasks, building blocks, never import the serving code.

Every model is logged as an MLflow 3 LoggedModel that says where it comes from, so that
`mlflow.search_logged_models(experiment_ids=[...], order_by=[{"field_name": "metrics.eval_loss",
"ascending": True}])` ranks a grid's cells by their models:
- its param `step` is the training step whose weights it holds (the best validation's, when
  training kept one), and the run's output link to the model is at that step, so MLflow links
  the metrics the run had logged at it (the validation that selected it) to the model;
- the cell's scores go to the run and to the model in one write (`model_id`): logging them to
  the run first and linking them afterwards would log every value twice.
The run's params (every spec field of the cell) are copied onto the model by MLflow itself.
"""
from __future__ import annotations

import mlflow

from registry.classifier import log_classifier
from registry.summarizer import log_summarizer
from registry.text_generator import log_text_generator

SERVABLES = {"summarizer": log_summarizer, "classifier": log_classifier, "text_generator": log_text_generator}


def log_servable(kind: str, *, base_source: str, artifact_kind: str, artifact_dir: str | None, step: int = 0,
                 metrics: dict[str, float] | None = None, metrics_step: int | None = None, **task_kwargs):
    """Log the servable model of `kind` in the active run, holding the weights of training step
    `step`, then `metrics` to the run (at `metrics_step`, default `step`) and to the model;
    returns MLflow's ModelInfo."""
    info = SERVABLES[kind](base_source=base_source, artifact_kind=artifact_kind, artifact_dir=artifact_dir,
                           step=step, params={"step": step}, **task_kwargs)
    if metrics:
        mlflow.log_metrics(metrics, step=step if metrics_step is None else metrics_step, model_id=info.model_id)
    return info
