"""What a worker's parent run records once its trials are done: the study's best trial, training
steps spent (what pruning saves), the trials table and Optuna's plots.

Nothing here may fail the study: the trials already ran and are stored; a plot that cannot be
drawn (too few finished trials, a single value) is skipped with a printed note.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import mlflow
import optuna
from optuna.trial import TrialState

from pipelines.errors import one_line


def train_steps(trials) -> int:
    return sum(int(t.user_attrs.get("train_steps", 0)) for t in trials)


def log_study_summary(study: optuna.Study, metric: str, worker_trials: list[int]) -> None:
    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.number in set(worker_trials)]
    count = {state: sum(t.state == state for t in mine) for state in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                      TrialState.FAIL)}
    mlflow.log_metrics({
        "hpo_total_train_steps": train_steps(mine),  # this worker's trials
        "hpo_study_total_train_steps": train_steps(trials),  # every worker's, so far
        "hpo_trials_complete": count[TrialState.COMPLETE], "hpo_trials_pruned": count[TrialState.PRUNED],
        "hpo_trials_failed": count[TrialState.FAIL], "hpo_study_trials": len(trials),
    })
    print(f"[hpo] this worker: {len(mine)} trials ({count[TrialState.COMPLETE]} complete, "
          f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed), {train_steps(mine)} training steps; "
          f"study: {len(trials)} trials, {train_steps(trials)} training steps", flush=True)
    if any(t.state == TrialState.COMPLETE for t in trials):
        best = study.best_trial
        mlflow.log_metric(f"best_{metric}", best.value)
        mlflow.log_params({f"best.{key}": value for key, value in best.params.items()})
        mlflow.set_tags({"best_trial": best.number, "best_run_id": best.user_attrs.get("mlflow_run_id", "")})
        print(f"[hpo] best: trial {best.number}, {metric} {best.value:.4g}, {best.params}", flush=True)
    else:
        print("[hpo] no trial of the study has completed yet: no best value to log", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        study.trials_dataframe().to_csv(Path(tmp) / "trials.csv", index=False)
        for name in save_plots(study, Path(tmp)):
            print(f"[hpo] plot: hpo/{name}", flush=True)
        mlflow.log_artifacts(tmp, "hpo")


def save_plots(study: optuna.Study, folder: Path) -> list[str]:
    """Optuna's matplotlib plots as PNGs; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    complete = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    wanted = {
        "optimization_history": plots.plot_optimization_history,
        "intermediate_values": plots.plot_intermediate_values,  # learning curves: where pruning cut
        "param_importances": plots.plot_param_importances,
        "parallel_coordinate": plots.plot_parallel_coordinate,
    }
    written = []
    for name, plot in wanted.items():
        if name == "param_importances" and complete < 2:
            print(f"[hpo] plot {name} skipped: it needs 2 completed trials, the study has {complete}", flush=True)
            continue
        try:
            with warnings.catch_warnings():  # the matplotlib plots are "experimental"; they are what we want
                warnings.simplefilter("ignore")
                axes = plot(study)
        except Exception as exc:  # a plot is a courtesy: the study's results are already stored
            print(f"[hpo] plot {name} skipped: {one_line(exc)}", flush=True)
            plt.close("all")
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(f"{name}.png")
    return written
