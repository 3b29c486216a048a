"""Where runs go (one experiment per spec, opening on the UI's training side) and the store
queries resume and promote share: every matching run, a page at a time."""
from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from pipelines.tracking import EXPERIMENT_KIND_TAG, TRAINING_KIND, paged_runs, quoted, ui_link, use_experiment


def test_runs_go_to_the_experiment_named_after_the_spec_tagged_for_training(tracking, monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    first = use_experiment("spec_a")
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == first
    client = MlflowClient()
    assert client.get_experiment(first).name == "spec_a"
    assert client.get_experiment(first).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    second = use_experiment("spec_b")  # the first choice, which MLflow exports, does not pass for one made outside
    assert second != first and client.get_experiment(second).name == "spec_b"
    assert use_experiment("spec_a") == first


def test_an_experiment_chosen_outside_wins_and_keeps_its_own_kind(tracking, monkeypatch):
    existing = mlflow.create_experiment("team", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team")
    assert use_experiment("spec_a") == existing
    assert MlflowClient().get_experiment(existing).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    assert MlflowClient().get_experiment_by_name("spec_a") is None


def test_two_workers_creating_one_experiment_at_once_both_use_it(tracking, monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    created = mlflow.create_experiment("raced")  # by the other worker, between our lookup and our create
    lookups = []
    real_lookup = MlflowClient.get_experiment_by_name

    def lookup_that_lost_the_race(self, name):
        lookups.append(name)
        return None if len(lookups) == 1 else real_lookup(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", lookup_that_lost_the_race)
    assert use_experiment("raced") == created and len(lookups) == 2


def test_a_deleted_experiment_is_one_line(tracking, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    gone = mlflow.create_experiment("gone")
    MlflowClient().delete_experiment(gone)
    with pytest.raises(SystemExit) as exit_info:
        use_experiment("gone")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: experiment 'gone' was deleted: restore it with `mlflow experiments restore --experiment-id {gone}`, "
        "or remove it for good with `mlflow gc`")


def test_links_go_to_the_tracking_server_or_make_ui_and_hide_passwords():
    page = "#/experiments/3/runs?workflowType=machine_learning"
    assert ui_link(page, "http://bob:pw@host:5000/") == f"http://bob:***@host:5000/{page}"
    assert ui_link(page, "sqlite:///mlruns/mlflow.db") == f"http://127.0.0.1:5000/{page}"


def test_paged_runs_returns_every_match_across_pages_and_only_matches(tracking):
    experiment = mlflow.create_experiment("paged")
    for i in range(5):
        with mlflow.start_run(experiment_id=experiment):
            mlflow.set_tag("cell_key", "it's" if i % 2 == 0 else "other")
    client = MlflowClient()
    query = "tags.cell_key = " + quoted("it's")  # a quote inside: the filter's grammar has no escapes
    found = list(paged_runs(client, [experiment], query, page_size=2))
    assert len(found) == 3 and {r.data.tags["cell_key"] for r in found} == {"it's"}
    assert len({r.info.run_id for r in found}) == 3
