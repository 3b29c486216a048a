"""`hpo`: tune the one cell of an experiment spec with Optuna; each trial is a nested MLflow run.

    mlflow run . -e hpo --env-manager local --experiment-name hpo_dialogsum_lora \\
        -P experiment=experiments/hpo_dialogsum_lora.yaml
    python -m pipelines.hpo experiments/hpo_dialogsum_lora.yaml --n-trials 8 --storage URL --study NAME

One process is one worker: it opens one parent MLflow run, attaches to the study in the Optuna
storage (creating it if absent) and runs trials until the study has `n_trials` in all. Workers
that name the same storage and study share the study: Optuna hands out trial numbers, and each
worker's sampler sees every other worker's finished trials. Storages (`pipelines.hpo_storage`):
a journal file for many processes on one machine (the default, `mlruns/optuna.journal`), a
PostgreSQL URL for many machines ($OPTUNA_STORAGE, when set, is the default).

A trial samples the spec's `hpo.space`, builds the trial's spec from it (validated like any
spec), and trains and scores it with `pipelines.cell.run_cell`, so a trial logs everything a
cell of `peft_compare` logs. With a pruner, every validation during training is reported to
Optuna, which may stop the trial there (its run ends KILLED with the tag `pruned_at_step`).

The parent run's tags `optuna_dashboard` (the study's page) and `optuna_dashboard.command` (the
`make dashboard` that serves it), repeated in its description, lead to the live study.
"""
from __future__ import annotations

import argparse
import sys
import warnings

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import Param, RunTag

from pipelines import distributed
from pipelines.allocator import reexec_with_tcmalloc
from pipelines.cell import run_cell
from pipelines.config import ExperimentSpec, load_spec, trial_spec
from pipelines.errors import PlatformError
from pipelines.follower import follow_cells
from pipelines.hpo_config import HpoSettings
from pipelines.hpo_report import log_study_summary
from pipelines.hpo_storage import (
    StudyLock,
    dashboard_link,
    default_storage,
    journal_path,
    open_storage,
    optimize_to_total,
    shown_url,
)
from pipelines.preflight import resolve_inputs
from pipelines.runtime import configure_threads
from pipelines.sources.datasets import Splits
from pipelines.spec_paths import add_set_argument, experiment_of, parse_overrides
from pipelines.tasks import get_task
from pipelines.tracking import failing_run_on_error, setup_tracking, use_experiment


class TrialFailed(Exception):
    """A trial's cell failed: Optuna records the trial as failed and the study goes on."""


def open_study(storage, shown: str, name: str, settings: HpoSettings,
               sampler_seed: int | None) -> tuple[optuna.Study, int | None]:
    """Create the study, or join it with the same direction; returns it with this worker's sampler
    set, and that sampler's seed."""
    study = optuna.create_study(storage=storage, study_name=name, direction=settings.direction,
                                pruner=settings.pruner.build(), load_if_exists=True)
    existing = study.direction.name.lower()
    if existing != settings.direction:
        raise PlatformError(f"optuna study '{name}' in {shown} exists with direction {existing}, "
                            f"but hpo.direction is {settings.direction} (pass another --study name)")
    if sampler_seed is not None:
        # A worker joining a study with trials in it offsets the seed, so it does not draw the
        # trials a previous run of the same command drew (one fresh worker stays reproducible).
        sampler_seed += len(study.trials)
    # constant_liar: a running trial counts as a bad one, so parallel workers do not all sample
    # next to the same promising point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constant_liar: chosen
        study.sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    return study, sampler_seed


class Objective:
    """One trial: sample, build the trial's spec, run the cell, report it to Optuna."""

    def __init__(self, spec: ExperimentSpec, source: str, study_name: str):
        self.spec, self.source, self.study_name = spec, source, study_name
        self.settings: HpoSettings = spec.hpo
        self.trial_numbers: list[int] = []  # this worker's trials
        self._splits: dict[str, Splits] = {}

    def splits(self, dataset, spec: ExperimentSpec) -> Splits:
        # The space may reach dataset fields (e.g. max_train_rows): load per distinct dataset spec.
        key = dataset.model_dump_json() + str(spec.seed) + spec.language_modeling.model_dump_json()
        if key not in self._splits:
            self._splits[key] = get_task(spec.task).load_splits(dataset, spec)
        return self._splits[key]

    def __call__(self, trial: optuna.Trial) -> float:
        self.trial_numbers.append(trial.number)
        metric = self.settings.metric
        try:
            values = {key: param.suggest(trial, key) for key, param in self.settings.space.items()}
        except ValueError as exc:  # the stored study tuned the same key with another distribution
            raise PlatformError(f"hpo.space does not match study '{self.study_name}': {exc}") from None
        spec = trial_spec(self.spec, values, f"{self.source} (trial {trial.number})")
        model_src, dataset, method = spec.models[0], spec.datasets[0], spec.methods[0]

        def on_validation(scores: dict[str, float], step: int) -> None:
            if metric in scores:
                trial.report(scores[metric], step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {scores.get(metric, float('nan')):.4g} at step {step}")

        result = run_cell(spec, model_src, dataset, method, self.splits(dataset, spec),
                          position=f"trial {trial.number}", on_validation=on_validation)
        steps = int(result.metrics.get("train_steps", 0))
        trial.set_user_attr("mlflow_run_id", result.run_id)
        trial.set_user_attr("train_steps", steps)
        MlflowClient().log_batch(
            result.run_id,
            params=[Param("trial.number", str(trial.number))] + [Param(f"hpo.{k}", str(v)) for k, v in values.items()],
            tags=[RunTag("mlflow.runName", f"trial-{trial.number} {result.label}"),
                  RunTag("optuna.study", self.study_name), RunTag("optuna.trial", str(trial.number))],
        )
        if result.status == "KILLED":
            raise optuna.TrialPruned(f"pruned at step {result.pruned_at_step}")
        if result.status != "FINISHED":
            trial.set_user_attr("error", result.error)  # Optuna keeps no reason for a failed trial
            raise TrialFailed(result.error)
        if metric not in result.metrics:
            raise PlatformError(f"hpo.metric: the cell logged no metric '{metric}' "
                                f"(it logged {', '.join(sorted(result.metrics))})")
        return float(result.metrics[metric])


def run(spec: ExperimentSpec, spec_path: str, n_trials: int | None = None, storage_url: str | None = None,
        study_name: str | None = None, sampler_seed: int | None = None) -> tuple[optuna.Study, list[int]]:
    """Run this worker's share of the study's `n_trials` inside the active parent run; returns the
    study and this worker's trial numbers."""
    if spec.hpo is None:
        raise PlatformError(f"experiment spec {spec_path} has no hpo section (what to tune: hpo.space)")
    if spec.seeds:  # a trial is one training run; averaging seeds per trial is not what the study's sampler models
        raise PlatformError(f"experiment spec {spec_path}: seeds {spec.seeds} are for peft_compare; a study tunes "
                            "under `seed` alone")
    settings = spec.hpo
    n_trials = n_trials or settings.n_trials
    storage_url = storage_url or default_storage()
    shown = shown_url(storage_url)  # an unknown scheme fails here, before any data is read
    study_name = study_name or spec.name
    sampler_seed = settings.sampler_seed if sampler_seed is None else sampler_seed
    configure_threads()
    mlflow.set_tag("mlflow.runName", f"hpo {study_name}")
    mlflow.log_params(spec.flat_params())
    mlflow.log_artifact(spec_path, "spec")
    objective = Objective(spec, spec_path, study_name)
    # Bad data or an unknown model fails before the first trial trains; the trials reuse the splits.
    resolve_inputs(spec, load=lambda dataset: objective.splits(dataset, spec))

    storage = open_storage(storage_url)
    study, seed_used = open_study(storage, shown, study_name, settings, sampler_seed)
    # Not `study`/`storage`: `mlflow run` logs its -P parameters under those names already.
    mlflow.log_params({"optuna.study": study_name, "optuna.storage": shown,
                       "optuna.n_trials": n_trials, "optuna.sampler_seed": seed_used})
    command, url = dashboard_link(storage_url, storage, study_name)
    # Set as the study opens, not at the end: the dashboard shows the trials while they run.
    note = (f"Optuna study '{study_name}' in {shown}. To watch its trials live in optuna-dashboard, "
            f"run `{command}` from the project's root and open {url}.")
    mlflow.set_tags({"optuna_dashboard": url, "optuna_dashboard.command": command, "mlflow.note.content": note})
    print(f"[hpo] study '{study_name}' in {shown}: {len(study.trials)} trials so far, {n_trials} in all "
          f"(shared by its workers); {settings.direction} {settings.metric}, pruner {settings.pruner.type}", flush=True)
    lock = StudyLock(storage, study_name, journal_path(storage_url))
    if not optimize_to_total(study, objective, n_trials, lock, catch=(TrialFailed,)):
        print(f"[hpo] study '{study_name}' already has its {n_trials} trials: this worker runs none "
              "(a larger --n-trials adds more)", flush=True)
    log_study_summary(study, settings.metric, objective.trial_numbers)
    return study, objective.trial_numbers


def _optional(cast):
    """argparse type for `mlflow run` parameters whose empty default means 'from the spec'."""
    def parse(text: str):
        return cast(text) if text.strip() else None

    parse.__name__ = cast.__name__  # argparse names the type in its error message
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpo", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="experiment spec YAML with an hpo section")
    parser.add_argument("--n-trials", type=_optional(int), default=None,
                        help="the study's total of trials, shared by all its workers (default: hpo.n_trials)")
    parser.add_argument("--storage", type=_optional(str), default=None,
                        help="a database URL (postgresql+psycopg://user@host/optuna, sqlite:///...) or a journal file "
                             "(journal:PATH, *.journal, *.log); default: $OPTUNA_STORAGE if set, "
                             "else journal:<cwd>/mlruns/optuna.journal")
    parser.add_argument("--study", type=_optional(str), default=None, help="study name (default: the spec's name)")
    parser.add_argument("--sampler-seed", type=_optional(int), default=None,
                        help="this worker's sampler seed (default: hpo.sampler_seed); "
                             "give workers started at the same moment different ones")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    setup_tracking()
    with distributed.processes():  # under torchrun: rank 0 runs the study, the others train its trials with it
        if not distributed.is_main():
            return follow_cells()
        use_experiment(experiment_of(args.experiment))
        with failing_run_on_error(run_name="hpo"):
            spec = load_spec(args.experiment, parse_overrides(args.set))
            study, mine = run(spec, args.experiment, args.n_trials, args.storage, args.study, args.sampler_seed)
    states = [t.state for t in study.get_trials(deepcopy=False) if t.number in mine]
    if mine and all(s == optuna.trial.TrialState.FAIL for s in states):
        print(f"error: all {len(mine)} trial(s) of this worker failed (reasons on their MLflow runs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    reexec_with_tcmalloc("pipelines.hpo")  # the allocator is fixed at exec: see pipelines/allocator.py
    sys.exit(main())
