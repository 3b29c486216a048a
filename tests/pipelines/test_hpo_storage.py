"""Where a study lives and how its workers share its total, on a trivial objective (no model):
storage arguments and their one-line errors, the journal file, and workers in separate
processes taking exactly the study's total between them."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from pipelines.errors import PlatformError
from pipelines.hpo_storage import (
    StudyLock,
    default_storage,
    journal_path,
    open_storage,
    optimize_to_total,
    shown_url,
)
from tests.conftest import REPO

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("argument, journal", [
    ("journal:{tmp}/a", "{tmp}/a"), ("{tmp}/a.journal", "{tmp}/a.journal"), ("{tmp}/a.log", "{tmp}/a.log"),
    ("sqlite:///{tmp}/a.journal", None), ("postgresql+psycopg://u@h/optuna", None),
])
def test_a_storage_argument_is_a_journal_file_or_a_database_url(argument, journal, tmp_path):
    argument = argument.format(tmp=tmp_path)
    expected = None if journal is None else tmp_path / journal.format(tmp=tmp_path)
    assert journal_path(argument) == expected
    if expected is not None:
        assert shown_url(argument) == f"journal:{expected}"


def test_a_shown_database_url_hides_its_password():
    assert shown_url("postgresql+psycopg://adaptlab:s3cret@db:5433/optuna") == \
        "postgresql+psycopg://adaptlab:***@db:5433/optuna"


@pytest.mark.parametrize("argument, expected", [
    ("redis://u:s3cret@host/0", "optuna storage redis://u:***@host/0 has an unknown scheme 'redis': use a database"),
    ("mlruns/optuna.db", "optuna storage 'mlruns/optuna.db' is neither a database URL nor a journal file: use"),
])
def test_an_unknown_storage_fails_in_one_line_without_its_password(argument, expected):
    with pytest.raises(PlatformError) as error:
        open_storage(argument)
    message = str(error.value)
    assert message.startswith(expected) and "\n" not in message and "s3cret" not in message


def test_the_default_is_optuna_storage_from_the_environment_else_a_journal_under_mlruns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_storage() == f"journal:{tmp_path / 'mlruns' / 'optuna.journal'}"
    assert (tmp_path / "mlruns").is_dir()
    monkeypatch.setenv("OPTUNA_STORAGE", "postgresql+psycopg://adaptlab@127.0.0.1:5433/optuna")
    assert default_storage() == "postgresql+psycopg://adaptlab@127.0.0.1:5433/optuna"


def test_a_journal_keeps_its_studies_across_opens(tmp_path):
    path = tmp_path / "studies.journal"
    study = optuna.create_study(storage=open_storage(str(path)), study_name="s", direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    again = optuna.load_study(study_name="s", storage=open_storage(f"journal:{path}"))
    assert [t.number for t in again.trials] == [0, 1, 2] and again.best_value == study.best_value


@pytest.mark.parametrize("case", ["missing", "a_file"])
def test_a_journal_whose_directory_cannot_take_it_fails_in_one_line(case, tmp_path):
    folder = tmp_path / "nowhere" if case == "missing" else tmp_path / "plain.txt"
    if case == "a_file":
        folder.write_text("not a directory")
    with pytest.raises(PlatformError) as error:
        open_storage(str(folder / "optuna.journal"))
    reason = "does not exist" if case == "missing" else "is not a directory"
    assert str(error.value) == f"optuna storage journal:{folder / 'optuna.journal'}: its directory {folder} {reason}"


def test_a_journal_in_a_read_only_directory_fails_in_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root may write anywhere (CI runs as root): deny as the filesystem would a user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == folder else real_access(path, mode))
    with pytest.raises(PlatformError, match=f"its directory {folder} is not writable"):
        open_storage(str(folder / "optuna.journal"))


def quadratic(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", -1, 1)) ** 2


def test_a_study_stops_at_its_total_counting_pruned_and_failed_trials(tmp_path):
    storage = open_storage(str(tmp_path / "s.journal"))
    study = optuna.create_study(storage=storage, study_name="s")
    outcomes = iter([optuna.TrialPruned, RuntimeError, None, None, None])

    def objective(trial):
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome("on purpose")
        return quadratic(trial)

    lock = StudyLock(storage, "s", tmp_path / "s.journal")
    assert optimize_to_total(study, objective, 3, lock, catch=(RuntimeError,)) == 3
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE]
    assert optimize_to_total(study, objective, 3, lock, catch=()) == 0  # run again: already done
    assert optimize_to_total(study, objective, 4, lock, catch=()) == 1 and len(study.trials) == 4


def test_enqueued_trials_count_once_a_worker_takes_them(tmp_path):
    storage = open_storage(str(tmp_path / "s.journal"))
    study = optuna.create_study(storage=storage, study_name="s")
    for x in (0.5, -0.5, 0.25):
        study.enqueue_trial({"x": x})
    assert optimize_to_total(study, quadratic, 2, StudyLock(storage, "s", tmp_path / "s.journal"), catch=()) == 2
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.WAITING]
    assert [t.params["x"] for t in study.trials[:2]] == [0.5, -0.5]


# One worker process: its trials sleep a little, so that workers finish at all moments, also
# together, and the count-then-ask race would show if the lock did not close it.
WORKER = """
import random, sys, time
import optuna
from pipelines.hpo_storage import StudyLock, journal_path, open_storage, optimize_to_total
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage_arg, name, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
storage = open_storage(storage_arg)
study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True)
def objective(trial):
    time.sleep(random.uniform(0.0, 0.03))
    return trial.suggest_float("x", -1, 1) ** 2
optimize_to_total(study, objective, total, StudyLock(storage, name, journal_path(storage_arg)), catch=())
"""


def run_workers(storage: str, study: str, total: int, workers: int = 4) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, storage, study, str(total)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(workers)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * workers, outputs


def assert_exactly(storage, study: str, total: int) -> None:
    trials = optuna.load_study(study_name=study, storage=storage).trials
    assert sorted(t.number for t in trials) == list(range(total))
    assert all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_four_worker_processes_take_exactly_the_study_total_between_them(kind, tmp_path):
    storage = f"journal:{tmp_path / 'optuna.journal'}" if kind == "journal" else f"sqlite:///{tmp_path / 'o.db'}"
    run_workers(storage, "shared", total=24)
    assert_exactly(open_storage(storage), "shared", 24)


@pytest.mark.slow
def test_four_worker_processes_on_postgresql_take_exactly_the_study_total(postgres):
    url, study = postgres.url("optuna"), f"test-total-{uuid.uuid4().hex[:12]}"
    try:
        run_workers(url, study, total=24)
        assert_exactly(open_storage(url), study, 24)
    finally:
        optuna.delete_study(study_name=study, storage=url)
