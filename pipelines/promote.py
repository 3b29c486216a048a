"""`promote`: register the best finished run of an experiment (or of one grid) and move
`@champion` to it only if it beats the current champion and meets the declared constraints.

    mlflow run . -e promote --env-manager local -P experiment=experiments/dialogsum_demo.yaml \\
        -P model_name=dialogue-summarizer -P metric=rougeL -P max_saved_mb=50 -P max_p50_latency_ms=5000
    python -m pipelines.promote --experiment dialogsum_demo --model-name dialogue-summarizer --max-saved-mb 50

`--experiment` is an MLflow experiment's name or a spec, whose runs went to the experiment named
after it.

Running it twice registers nothing new; failed or unfinished runs are never candidates.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import mlflow
from mlflow import MlflowClient

from pipelines.errors import PlatformError
from pipelines.runtime import configure_threads
from pipelines.spec_paths import experiment_of
from pipelines.tracking import paged_runs, quoted, setup_tracking
from registry.promote import best_of, promote


def candidates(client: MlflowClient, experiment: str, metric: str, parent_run: str | None):
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise PlatformError(f"experiment '{experiment}' does not exist")
    query = "attributes.status = 'FINISHED' AND tags.model_uri LIKE '%'"
    if parent_run:
        query += f" AND tags.mlflow.parentRunId = {quoted(parent_run)}"
    runs = [r for r in paged_runs(client, [found.experiment_id], query) if metric in r.data.metrics]
    if not runs:
        scope = f"grid {parent_run}" if parent_run else f"experiment '{experiment}'"
        raise PlatformError(f"{scope} has no finished run with metric '{metric}' and a logged model")
    return runs


def p50_latency_ms(model_uri: str, samples: int) -> float:
    """Median time of one request with the model's own input example, after one warm-up call."""
    model = mlflow.pyfunc.load_model(model_uri)
    example = model.input_example
    if example is None:
        raise PlatformError(f"model {model_uri} has no input example to time")
    model.predict(example)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        model.predict(example)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(experiment: str, model_name: str, metric: str, greater_is_better: bool, parent_run: str | None,
        max_saved_mb: float | None, max_p50_latency_ms: float | None, latency_samples: int):
    client = MlflowClient()
    runs = candidates(client, experiment, metric, parent_run)
    best = best_of(runs, lambda r: r.data.metrics[metric], greater_is_better)
    uri = best.data.tags["model_uri"]
    print(f"[promote] best of {len(runs)} finished runs: {best.info.run_name} ({best.info.run_id}) "
          f"{metric}={best.data.metrics[metric]:.4f}", flush=True)
    violations = []
    saved = best.data.metrics.get("saved_mb")
    if max_saved_mb is not None and saved is not None and saved > max_saved_mb:
        violations.append(f"saved {saved:.1f} MB > {max_saved_mb:g} MB")
    if max_p50_latency_ms is not None:
        latency = p50_latency_ms(uri, latency_samples)
        print(f"[promote] p50 latency {latency:.0f} ms over {latency_samples} requests", flush=True)
        if latency > max_p50_latency_ms:
            violations.append(f"p50 latency {latency:.0f} ms > {max_p50_latency_ms:g} ms")
    result = promote(model_uri=uri, run_id=best.info.run_id, name=model_name, metric=metric,
                     greater_is_better=greater_is_better, violations=violations)
    print(f"[promote] {model_name} v{result.version} @{result.alias or '-'}: {result.reason}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promote", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/dialogsum_demo.yaml",
                        help="the MLflow experiment holding the runs: its name, or the spec whose runs went to it")
    parser.add_argument("--parent-run", default=None, help="only the cells of this peft_compare parent run")
    parser.add_argument("--model-name", required=True, help="registered model name")
    parser.add_argument("--metric", default="rougeL")
    parser.add_argument("--lower-is-better", action="store_true", help="for losses and error rates")
    parser.add_argument("--max-saved-mb", type=float, default=None, help="constraint on the bytes the method saved")
    parser.add_argument("--max-p50-latency-ms", type=float, default=None, help="constraint on one request's p50")
    parser.add_argument("--latency-samples", type=int, default=5)
    args = parser.parse_args(argv)
    setup_tracking()
    configure_threads()
    try:
        experiment = experiment_of(args.experiment) if args.experiment.endswith((".yaml", ".yml")) else args.experiment
        run(experiment, args.model_name, args.metric, not args.lower_is_better, args.parent_run or None,
            args.max_saved_mb, args.max_p50_latency_ms, args.latency_samples)
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
