"""`evaluate`: score any logged or registered model on any compatible dataset, as a new MLflow
run whose metrics are linked to the model (this is how generalisation to other data is measured).

    mlflow run . -e evaluate --env-manager local -P model_uri=models:/dialogue-summarizer@champion \\
        -P data=../shared/data/samsum/validation.jsonl -P limit=100
    python -m pipelines.evaluate models:/dialogue-summarizer@champion data.jsonl --limit 100

The data is read and validated before the model is loaded, so mismatched fields fail in seconds.
"""
from __future__ import annotations

import argparse
import sys
import time

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from pipelines.errors import PlatformError
from pipelines.metrics import summarization_scores
from pipelines.runtime import configure_threads
from pipelines.sources.datasets import read_rows, validate_rows
from pipelines.tracking import failing_run_on_error, setup_tracking

# What each kind of served model is scored with, keyed by its output column.
SCORERS = {"summary": summarization_scores}


def model_info(model_uri: str):
    try:
        return mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PlatformError(f"model URI '{model_uri}' cannot be found: {first}") from None


def evaluate(model_uri: str, data: str, text_field: str, target_field: str, limit: int | None,
             chunk: int = 32) -> dict[str, float]:
    """Run inside an active run: validate data, load the model, predict, score, log."""
    examples = validate_rows(read_rows(data), text_field, target_field, data)
    if limit:
        examples = examples[:limit]
    info = model_info(model_uri)
    inputs = info.signature.inputs.input_names() if info.signature else []
    outputs = info.signature.outputs.input_names() if info.signature and info.signature.outputs else []
    scorer = next((SCORERS[o] for o in outputs if o in SCORERS), None)
    if not inputs or scorer is None:
        raise PlatformError(f"model '{model_uri}' has no signature this entry point can score "
                            f"(inputs {inputs}, outputs {outputs})")
    mlflow.log_params({"model_uri": model_uri, "data": data, "text_field": text_field,
                       "target_field": target_field, "limit": limit, "rows": len(examples)})
    mlflow.set_tags({"evaluated_model_uri": model_uri, "evaluated_model_id": info.model_id or "",
                     "evaluated_run_id": info.run_id or ""})
    print(f"[evaluate] {len(examples)} rows of {data} on {model_uri}", flush=True)
    model = mlflow.pyfunc.load_model(model_uri)
    predictions: list[str] = []
    started = time.perf_counter()
    for start in range(0, len(examples), chunk):
        batch = examples[start : start + chunk]
        out = model.predict(pd.DataFrame({inputs[0]: [ex.text for ex in batch]}))
        predictions.extend(out[outputs[0]].tolist() if isinstance(out, pd.DataFrame) else list(out))
        print(f"  predicted {len(predictions)}/{len(examples)}", flush=True)
    scores = scorer(predictions, [list(ex.references) for ex in examples])
    scores["predict_time_s"] = time.perf_counter() - started
    # model_id links these metrics to the logged model in the MLflow UI (MLflow 3 LoggedModel).
    if info.model_id:
        mlflow.log_metrics(scores, model_id=info.model_id)
    else:
        mlflow.log_metrics(scores)
    mlflow.log_table({"row": [ex.row for ex in examples], "input": [ex.text for ex in examples],
                      "reference": [ex.references[0] for ex in examples], "prediction": predictions},
                     artifact_file="predictions.json")
    print("  " + "  ".join(f"{k} {v:.4g}" for k, v in scores.items()), flush=True)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("model_uri", help="runs:/<run_id>/model, models:/<name>@<alias>, models:/<name>/<version>")
    parser.add_argument("data", help="jsonl/csv/parquet file or hf:<name>[:<split>]")
    parser.add_argument("--text-field", default="dialogue")
    parser.add_argument("--target-field", default="summary")
    parser.add_argument("--limit", type=float, default=0, help="score only the first N rows (0: all)")
    args = parser.parse_args(argv)
    if args.limit < 0 or args.limit != int(args.limit):
        raise SystemExit(f"error: --limit must be a whole number >= 0, got {args.limit:g}")
    args.limit = int(args.limit) or None
    setup_tracking()
    configure_threads()
    with failing_run_on_error(run_name="evaluate"):
        evaluate(args.model_uri, args.data, args.text_field, args.target_field, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
