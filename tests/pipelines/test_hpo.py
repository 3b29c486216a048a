"""The hpo entry point on the tiny random model: pruned, failed and finished trials as nested
runs, the parent's summary, workers sharing one study's total (two on the default journal file,
four on PostgreSQL), and one-line errors for bad input.

The data pairs every dialogue with the same summary: at a working learning rate the tiny model
learns to write it within a few steps, at a learning rate near zero it does not, so a pruner
has a clearly worse trial to stop."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from pipelines import hpo
from pipelines.hpo_storage import open_storage
from pipelines.tracked_data import evaluation_input
from tests.conftest import DIALOGUES, REPO, write_jsonl

GOOD_LR, BAD_LR = 3e-3, 1e-7
STUDY = "tiny_hpo"


def write_spec(tmp_path, model_dir, hpo_section=None, train=None, **overrides) -> str:
    summary = DIALOGUES[0][1]
    rows = [{"dialogue": d, "summary": summary} for d, _ in DIALOGUES]
    spec = {
        "name": STUDY,
        "models": [{"name": "tiny", "source": str(model_dir)}],
        "datasets": [{"name": "dlg", "train": str(write_jsonl(tmp_path / "train.jsonl", rows)),
                      "eval": str(write_jsonl(tmp_path / "eval.jsonl", rows[:2]))}],
        "methods": [{"name": "full", "learning_rate": GOOD_LR}],
        "train": train or {"max_steps": 12, "batch_size": 4, "log_every": 6, "max_seq_len": 128, "warmup_ratio": 0.0,
                           "eval_every_steps": 6, "eval_subset": 2},
        "generation": {"max_new_tokens": 12, "batch_size": 4},
        "eval": {"max_examples": 2},
        "hpo": hpo_section or {
            "n_trials": 3, "metric": "rougeL", "pruner": {"type": "median", "n_startup_trials": 1},
            "space": {"methods.0.learning_rate": {"type": "float", "low": BAD_LR, "high": 1e-2, "log": True},
                      "models.0.source": {"type": "categorical", "choices": [str(model_dir), str(tmp_path / "gone")]}},
        },
    }
    spec.update(overrides)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def storage_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"


def default_journal(tmp_path):
    """The storage hpo uses when given none (the `tracking` fixture runs the test in tmp_path)."""
    return open_storage(f"journal:{tmp_path / 'mlruns' / 'optuna.journal'}")


def runs_of(client):
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_study_prunes_the_worse_trial_fails_the_broken_one_and_summarises(tracking, tmp_path, tiny_lm_dir, capsys):
    spec = write_spec(tmp_path, tiny_lm_dir)
    # The first trials of a study can be fixed in advance (as another worker or a user would):
    # a working learning rate, one near zero, and a model that does not exist.
    study = optuna.create_study(storage=default_journal(tmp_path), study_name=STUDY, direction="maximize")
    for lr, source in [(GOOD_LR, tiny_lm_dir), (BAD_LR, tiny_lm_dir), (GOOD_LR, tmp_path / "gone")]:
        study.enqueue_trial({"methods.0.learning_rate": lr, "models.0.source": str(source)})

    assert hpo.main([spec, "--n-trials", "3"]) == 0
    printed = capsys.readouterr().out
    assert "plot param_importances skipped: it needs 2 completed trials, the study has 1" in printed

    trials = optuna.load_study(study_name=STUDY, storage=default_journal(tmp_path)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    good, pruned, failed = trials
    assert pruned.params["methods.0.learning_rate"] == BAD_LR
    assert list(pruned.intermediate_values) == [6]  # stopped at its first validation (eval_every_steps)
    assert pruned.intermediate_values[6] < good.intermediate_values[6]
    assert list(good.intermediate_values) == [6, 12]
    assert failed.intermediate_values == {} and failed.user_attrs["train_steps"] == 0
    assert "does not exist" in failed.user_attrs["error"]

    client = MlflowClient()
    runs = runs_of(client)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = {int(r.data.params["trial.number"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert parent.info.status == "FINISHED" and sorted(children) == [0, 1, 2]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
    assert [children[n].info.status for n in range(3)] == ["FINISHED", "KILLED", "FAILED"]
    for number, trial in enumerate(trials):
        assert float(children[number].data.params["hpo.methods.0.learning_rate"]) == trial.params[
            "methods.0.learning_rate"]
        assert trial.user_attrs["mlflow_run_id"] == children[number].info.run_id
    assert children[1].data.tags["pruned_at_step"] == "6" and children[1].data.metrics["train_steps"] == 6
    assert "does not exist" in children[2].data.tags["error"]
    # Every trial, pruned or failed too, records the rows it was (to be) scored on: the same rows.
    assert len({evaluation_input(children[n]).digest for n in range(3)}) == 1
    finished = children[0].data.metrics
    assert finished["rougeL"] == good.value and finished["train_steps"] == 12
    for key in ("bleu", "eval_loss", "wall_time_s", "peak_rss_mb", "saved_bytes"):  # everything a cell logs
        assert key in finished
    assert "predictions.json" in {a.path for a in client.list_artifacts(children[0].info.run_id)}

    summary = parent.data
    journal = f"journal:{tmp_path / 'mlruns' / 'optuna.journal'}"
    study_id = default_journal(tmp_path).get_study_id_from_name(STUDY)
    assert summary.tags["optuna_dashboard"] == f"http://127.0.0.1:8080/dashboard/studies/{study_id}"
    assert summary.tags["optuna_dashboard.command"] == f"make dashboard STORAGE={journal}"
    assert f"run `make dashboard STORAGE={journal}`" in summary.tags["mlflow.note.content"]
    assert summary.metrics["best_rougeL"] == good.value
    assert float(summary.params["best.methods.0.learning_rate"]) == GOOD_LR
    assert summary.tags["best_run_id"] == children[0].info.run_id
    steps = sum(r.data.metrics.get("train_steps", 0) for r in children.values())
    assert summary.metrics["hpo_total_train_steps"] == steps == 18
    assert (summary.metrics["hpo_trials_complete"], summary.metrics["hpo_trials_pruned"],
            summary.metrics["hpo_trials_failed"]) == (1, 1, 1)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "hpo")}
    assert artifacts == {"hpo/trials.csv", "hpo/optimization_history.png", "hpo/intermediate_values.png",
                         "hpo/parallel_coordinate.png"}


def start_workers(tmp_path, spec: str, count: int, *args: str) -> list[subprocess.Popen]:
    MlflowClient().search_experiments()  # the tracking store exists before the workers write to it
    env = {**os.environ, "PYTHONPATH": str(REPO), "ADAPTLAB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-m", "pipelines.hpo", spec, *args, "--sampler-seed", str(seed)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for seed in range(count)]


def finished(workers: list[subprocess.Popen], timeout: float = 300) -> None:
    outputs = [w.communicate(timeout=timeout)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * len(workers), "\n".join(o[-3000:] for o in outputs)


def assert_each_trial_once_with_one_run(trials, study: str, total: int, workers: int) -> None:
    """The study holds trials 0..total-1, each once and complete, and each has exactly one MLflow
    run, under one of the workers' parent runs, which each logged the study's total."""
    assert sorted(t.number for t in trials) == list(range(total))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    runs = runs_of(MlflowClient())
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("optuna.study") == study and "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == workers and all(p.data.params["optuna.n_trials"] == str(total) for p in parents)
    assert Counter(int(r.data.tags["optuna.trial"]) for r in children) == Counter(range(total))
    by_number = {int(r.data.tags["optuna.trial"]): r for r in children}
    assert all(t.user_attrs["mlflow_run_id"] == by_number[t.number].info.run_id for t in trials)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} <= {p.info.run_id for p in parents}
    assert sum(p.data.metrics["hpo_trials_complete"] for p in parents) == total


def test_two_workers_share_one_study_total_on_the_default_journal(tracking, tmp_path, tiny_lm_dir):
    train = {"max_steps": 2, "batch_size": 4, "log_every": 1, "max_seq_len": 128}
    section = {"n_trials": 4, "space": {"methods.0.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2,
                                                                    "log": True}}}
    spec = write_spec(tmp_path, tiny_lm_dir, section, train)
    finished(start_workers(tmp_path, spec, 2))

    trials = optuna.load_study(study_name=STUDY, storage=default_journal(tmp_path)).trials
    assert_each_trial_once_with_one_run(trials, STUDY, total=4, workers=2)
    parents = [r for r in runs_of(MlflowClient()) if "mlflow.parentRunId" not in r.data.tags]
    assert sum(p.data.metrics["hpo_total_train_steps"] for p in parents) == 4 * 2
    assert all(p.data.params["optuna.storage"] == f"journal:{tmp_path / 'mlruns' / 'optuna.journal'}"
               for p in parents)


@pytest.mark.slow
def test_four_workers_on_postgresql_run_the_study_total_each_trial_once(tracking, tmp_path, tiny_lm_dir, postgres):
    """The issue's test: 4 workers against the project's PostgreSQL, a study of 8 trials."""
    # The smallest cell that still is one: the base model untrained, one eval dialogue, two tokens.
    section = {"n_trials": 8, "metric": "rougeL", "pruner": "none",
               "space": {"generation.max_new_tokens": {"type": "int", "low": 1, "high": 2}}}
    spec = write_spec(tmp_path, tiny_lm_dir, section, {"max_steps": 1, "batch_size": 1, "max_seq_len": 64},
                      methods=[{"name": "base"}], generation={"max_new_tokens": 1, "batch_size": 1},
                      eval={"max_examples": 1})
    url, study = postgres.url("optuna"), f"tiny_hpo_{uuid.uuid4().hex[:12]}"
    try:
        finished(start_workers(tmp_path, spec, 4, "--storage", url, "--study", study), timeout=240)
        trials = optuna.load_study(study_name=study, storage=url).trials
        assert_each_trial_once_with_one_run(trials, study, total=8, workers=4)
    finally:
        optuna.delete_study(study_name=study, storage=url)  # the database is shared: leave it as found


def _bad_case(case, tmp_path, tiny_lm_dir):
    args = []
    space = {"methods.0.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}
    section = {"space": space}
    if case == "empty_space":
        section = {"space": {}}
    elif case == "unknown_key":
        section = {"space": {"methods.0.rank": {"type": "int", "low": 2, "high": 8}}}
    elif case == "low_above_high":
        section = {"space": {"methods.0.learning_rate": {"type": "float", "low": 1e-2, "high": 1e-4}}}
    elif case == "unreachable_sqlite":
        args = ["--storage", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'optuna.db'}"]
    elif case == "unreachable_postgres":
        args = ["--storage", "postgresql://nobody@127.0.0.1:1/optuna"]
    elif case == "unknown_scheme":
        args = ["--storage", "redis://nobody:s3cret@127.0.0.1/0"]
    elif case == "journal_directory_missing":
        args = ["--storage", f"journal:{tmp_path / 'no' / 'such' / 'optuna.journal'}"]
    elif case == "other_direction":
        optuna.create_study(storage=default_journal(tmp_path), study_name=STUDY, direction="minimize")
    elif case == "seeds":
        args = ["--set", "seeds=[1,2]"]
    spec = write_spec(tmp_path, tiny_lm_dir, section, {"max_steps": 1, "batch_size": 4})
    return [spec, *args]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("empty_space", "hpo.space: Dictionary should have at least 1 item"),
        ("unknown_key", "hpo.space.methods.0.rank: no field 'rank' in methods.0"),
        ("low_above_high", "hpo.space.methods.0.learning_rate: Value error, low (0.01) is greater than high (0.0001)"),
        ("unreachable_sqlite", "cannot be reached: (sqlite3.OperationalError) unable to open database file"),
        ("unreachable_postgres", "optuna storage postgresql://nobody@127.0.0.1:1/optuna cannot be reached: "),
        ("unknown_scheme", "optuna storage redis://nobody:***@127.0.0.1/0 has an unknown scheme 'redis'"),
        ("journal_directory_missing", "optuna.journal: its directory "),
        ("other_direction", f"optuna study '{STUDY}' in journal:/"),
        ("seeds", "seeds [1, 2] are for peft_compare; a study tunes under `seed` alone"),
    ],
)
def test_bad_input_fails_before_training_with_one_line_and_a_failed_run(case, expected, tracking, tmp_path,
                                                                        tiny_lm_dir, capsys):
    argv = _bad_case(case, tmp_path, tiny_lm_dir)
    with pytest.raises(SystemExit) as exit_info:
        hpo.main(argv)
    assert exit_info.value.code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err_lines) == 1 and expected in err_lines[0], err_lines
    if case == "other_direction":
        assert "exists with direction minimize, but hpo.direction is maximize" in err_lines[0]
    runs = runs_of(MlflowClient())
    assert len(runs) == 1 and runs[0].info.status == "FAILED" and expected in runs[0].data.tags["error"]


def test_a_classification_study_tunes_toward_accuracy(tracking, tmp_path, tiny_encoder_dir, sentiment_files):
    from tests.pipelines.test_cell_classification import write_cls_spec

    spec = write_cls_spec(
        tmp_path, tiny_encoder_dir, sentiment_files, [{"name": "full", "learning_rate": 3e-3}],
        train={"max_steps": 8, "batch_size": 8, "log_every": 4, "max_seq_len": 32, "eval_every_steps": 4},
        hpo={"n_trials": 2, "metric": "accuracy", "pruner": "none",
             "space": {"methods.0.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}}},
    )
    assert hpo.main([spec, "--storage", storage_url(tmp_path)]) == 0
    study = optuna.load_study(study_name="tiny_cls", storage=storage_url(tmp_path))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(0.0 <= t.value <= 1.0 for t in study.trials)  # accuracy of each trial's eval split
