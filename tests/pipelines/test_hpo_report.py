import optuna

from pipelines.hpo_report import log_study_summary, save_plots


def objective(trial):
    return (trial.suggest_float("x", -3, 3) - 1) ** 2 + trial.suggest_int("n", 1, 4)


def test_plots_include_importances_once_two_trials_completed(tmp_path, capsys):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=1)
    assert save_plots(study, tmp_path) == ["optimization_history.png", "intermediate_values.png",
                                           "parallel_coordinate.png"]
    assert "plot param_importances skipped" in capsys.readouterr().out
    study.optimize(objective, n_trials=5)
    written = save_plots(study, tmp_path)
    assert "param_importances.png" in written and len(written) == 4
    assert all((tmp_path / name).stat().st_size > 1000 for name in written)


def test_a_study_without_a_completed_trial_is_summarised_without_a_best(tracking, capsys):
    import mlflow
    from mlflow import MlflowClient

    def prune_or_fail(trial):
        trial.suggest_float("x", 0, 1)
        if trial.number == 0:
            raise optuna.TrialPruned()
        raise ValueError("broken")

    study = optuna.create_study()
    study.optimize(prune_or_fail, n_trials=2, catch=(ValueError,))
    with mlflow.start_run() as run:
        log_study_summary(study, "rougeL", [0, 1])
    assert "no trial of the study has completed yet" in capsys.readouterr().out
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert (metrics["hpo_trials_pruned"], metrics["hpo_trials_failed"], metrics["hpo_trials_complete"]) == (1, 1, 0)
    assert "best_rougeL" not in metrics
