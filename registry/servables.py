"""Which servable pyfunc logs a task's model: a task names it (`Task.servable`), the cell asks
here. Kept in `registry/` so that tasks, building blocks, never import the serving code."""
from __future__ import annotations

from registry.classifier import log_classifier
from registry.summarizer import log_summarizer
from registry.text_generator import log_text_generator

SERVABLES = {"summarizer": log_summarizer, "classifier": log_classifier, "text_generator": log_text_generator}


def log_servable(kind: str, *, base_source: str, artifact_kind: str, artifact_dir: str | None, **task_kwargs):
    """Log the servable model of `kind` in the active run; returns MLflow's ModelInfo."""
    return SERVABLES[kind](base_source=base_source, artifact_kind=artifact_kind, artifact_dir=artifact_dir,
                           **task_kwargs)
