"""`peft_compare`: one parent MLflow run, one child run per (model, method, dataset), a report,
and promotion of the best cell. The runs go to the MLflow experiment named after the spec.

    mlflow run . -e peft_compare --env-manager local --experiment-name dialogsum_demo \\
        -P experiment=experiments/dialogsum_demo.yaml
    python -m pipelines.compare experiments/dialogsum_demo.yaml
    python -m pipelines.compare experiments/dialogsum_demo.yaml --set "train.max_steps=2 eval.max_examples=3"

Killed, the same command resumes: finished cells are reused, and the cell that was training picks
up from its last checkpoint (`train.checkpoint_every_minutes`) in its own MLflow run; `--restart`
trains every cell afresh.

Data-parallel on N processes (gloo on CPUs, NCCL on GPUs; `pipelines/distributed.py`), the same
spec and the same losses, one set of runs logged by rank 0:

    torchrun --standalone --nproc_per_node=2 -m pipelines.compare experiments/dialogsum_demo.yaml
    mlflow run . -e peft_compare --env-manager local --experiment-name dialogsum_demo -P processes=2  # the same
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import mlflow

from pipelines import distributed
from pipelines.allocator import reexec_with_tcmalloc
from pipelines.cell import cell_params, reused_cell, run_cell
from pipelines.cell_resume import cell_checkpoint_dir
from pipelines.config import ExperimentSpec, load_spec
from pipelines.follower import follow_cells
from pipelines.grid_summary import log_grid_summary
from pipelines.preflight import resolve_inputs
from pipelines.report import comparison_table, quality_cost_chart, reading, reference_rows, to_markdown
from pipelines.resume import cell_key, mark_resumed, reusable_cells
from pipelines.runtime import configure_threads
from pipelines.seed_stats import across_seeds, mark_noise
from pipelines.sources.datasets import data_fingerprint
from pipelines.sources.leakage import log_leakage
from pipelines.spec_paths import add_set_argument, experiment_of, parse_overrides
from pipelines.tasks import get_task
from pipelines.tracking import failing_run_on_error, setup_tracking, ui_link, use_experiment
from pipelines.ui_view import share_comparison_view
from registry.promote import best_of, promote


def run(spec: ExperimentSpec, spec_path: str | None = None, restart: bool = False):
    """Run the grid inside the active parent run; returns (cells, table, promotion). A cell with a
    checkpoint (its grid was killed while it trained) resumes from it, unless `restart`."""
    configure_threads()
    mlflow.set_tag("mlflow.runName", spec.name)
    mlflow.log_params(spec.flat_params())
    if spec_path:
        mlflow.log_artifact(spec_path, "spec")
    splits = resolve_inputs(spec)  # bad data or an unknown model fails before the first cell trains
    log_leakage(splits)  # how much of each eval split train already holds, before anyone believes its scores
    # Under `seeds`, a cell's runs differ in their training seed only: the splits are the spec's.
    seeded = [spec.model_copy(update={"seed": seed}) for seed in spec.seeds] if spec.seeds else [spec]
    grid = [(s, m, d, meth) for m in spec.models for d in spec.datasets for meth in spec.methods for s in seeded]
    fingerprints = {name: data_fingerprint(s.train + s.eval) for name, s in splits.items()}
    keys = [cell_key(cell_params(s, m, d, meth), fingerprints[d.name]) for s, m, d, meth in grid]
    reuse = reusable_cells(set(keys))
    if reuse:
        mark_resumed(reuse.values(), mlflow.active_run().info.run_id)
    cells = []
    for i, ((cell_spec, model_src, dataset, method), key) in enumerate(zip(grid, keys), start=1):
        position = f"{i}/{len(grid)}"
        if key in reuse:
            cells.append(reused_cell(reuse[key], cell_spec, model_src, dataset, method, position))
        else:
            seed_part = f"/seed-{cell_spec.seed}" if spec.seeds else ""
            checkpoints = cell_checkpoint_dir(spec, f"{model_src.name}/{method.name}/{dataset.name}{seed_part}")
            if restart:
                shutil.rmtree(checkpoints, ignore_errors=True)
            cells.append(run_cell(cell_spec, model_src, dataset, method, splits[dataset.name], position, key,
                                  checkpoint_dir=checkpoints))
    references = {d.name: get_task(spec.task).reference_scores(splits[d.name]) for d in spec.datasets}
    for dataset, figures in references.items():
        for name, scores in figures.items():
            mlflow.log_metrics({f"reference.{dataset}.{name.replace(' ', '_')}.{k}": v for k, v in scores.items()})
    runs_table = comparison_table(cells, reference_rows(references))
    metric, greater = spec.registry.metric, spec.registry.greater_is_better
    table = mark_noise(across_seeds(runs_table), metric, greater_is_better=greater)  # itself without seeds
    log_grid_summary(table)
    summary = reading(table, metric, greater_is_better=greater)
    mlflow.set_tag("mlflow.note.content", summary)  # shown as the run's description in the UI
    markdown = to_markdown(table) + "\n\n" + summary
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp) / "comparison.csv", index=False)
        if spec.seeds:
            runs_table.to_csv(Path(tmp) / "comparison_runs.csv", index=False)  # every seed's run
        (Path(tmp) / "comparison.md").write_text(markdown + "\n")
        quality_cost_chart(table, metric, Path(tmp) / "quality_vs_cost.png")
        mlflow.log_artifacts(tmp, "report")
    print("\n" + markdown + "\n", flush=True)
    view = share_comparison_view(mlflow.active_run().info.experiment_id, spec.registry.metric)
    if view:
        mlflow.set_tag("comparison_view", ui_link(view))
        print(f"[ui] the cells side by side: {ui_link(view)}", flush=True)
    promotion = _promote_best(spec, cells)
    failed = [c for c in cells if c.status != "FINISHED"]
    if failed:
        mlflow.set_tag("failed_cells", ", ".join(c.label for c in failed))
    return cells, table, promotion


def _promote_best(spec: ExperimentSpec, cells):
    metric = spec.registry.metric
    scored = [c for c in cells if c.status == "FINISHED" and metric in c.metrics]
    if not spec.registry.promote or not scored:
        if spec.registry.promote:
            print(f"[registry] nothing to register: no finished cell has metric '{metric}'", flush=True)
        return None
    if spec.seeds:  # the cell with the best mean over its seeds, then the best of its runs
        means = {cell: statistics.fmean(c.metrics[metric] for c in scored if c.cell == cell)
                 for cell in dict.fromkeys(c.cell for c in scored)}
        best_cell = best_of(list(means), means.get, spec.registry.greater_is_better)
        scored = [c for c in scored if c.cell == best_cell]
    best = best_of(scored, lambda c: c.metrics[metric], spec.registry.greater_is_better)
    promotion = promote(model_uri=best.model_uri, run_id=best.run_id, name=spec.registry.model_name, metric=metric,
                        greater_is_better=spec.registry.greater_is_better)
    mlflow.set_tags({"registered_version": promotion.version, "registered_alias": promotion.alias})
    print(f"[registry] {spec.registry.model_name} v{promotion.version} <- {best.label} as @{promotion.alias}: "
          f"{promotion.reason}", flush=True)
    return promotion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peft_compare", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="path to an experiment spec YAML in experiments/")
    add_set_argument(parser)
    parser.add_argument("--restart", nargs="?", const="true", default="false", choices=["true", "false"],
                        help="train every cell afresh, deleting the checkpoints of an interrupted grid "
                        "(`--restart`, or `--restart true` as MLproject passes it)")
    parser.add_argument("--processes", type=int, default=1,
                        help="train each cell with N data-parallel processes on this machine (torchrun, DDP); the same "
                        "as `torchrun --standalone --nproc_per_node=N -m pipelines.compare ...`")
    args = parser.parse_args(argv)
    if args.processes < 1 or (distributed.launched() and args.processes not in (1, distributed.world_size_env())):
        parser.error(f"--processes {args.processes}: give 1 or more, and under torchrun its own --nproc_per_node")
    if args.processes > 1 and not distributed.launched():
        distributed.relaunch(args.processes, "pipelines.compare", sys.argv[1:] if argv is None else argv)
    setup_tracking()
    with distributed.processes():  # under torchrun: rank 0 runs the grid, the others train its cells with it
        if not distributed.is_main():
            return follow_cells()
        use_experiment(experiment_of(args.experiment))
        with failing_run_on_error(run_name="peft_compare"):
            spec = load_spec(args.experiment, parse_overrides(args.set))
            distributed.device(spec.train.device)  # a device the processes cannot share fails here
            cells, _, _ = run(spec, args.experiment, restart=args.restart == "true")
    failed = [c for c in cells if c.status != "FINISHED"]
    if failed:
        print(f"error: {len(failed)} cell(s) failed: " + "; ".join(f"{c.label}: {c.error}" for c in failed),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    reexec_with_tcmalloc("pipelines.compare")  # the allocator is fixed at exec: see pipelines/allocator.py
    sys.exit(main())
