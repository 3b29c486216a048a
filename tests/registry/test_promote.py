"""Promotion rules, table-driven: first / better / worse / lower-is-better / failed / no metric / twice."""
from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from pipelines.errors import PlatformError
from registry.promote import promote


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def finished_run(value: float | None, status: str = "FINISHED") -> tuple[str, str]:
    with mlflow.start_run() as run:
        if value is not None:
            mlflow.log_metric("rougeL", value)
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
    if status != "FINISHED":
        MlflowClient().set_terminated(run.info.run_id, status)
    return run.info.run_id, info.model_uri


@pytest.mark.parametrize(
    "history, candidate, greater_is_better, expected_alias, champion_after",
    [
        ([], 0.30, True, "champion", 1),
        ([0.30], 0.35, True, "champion", 2),
        ([0.30], 0.25, True, "challenger", 1),
        ([0.30], 0.30, True, "challenger", 1),  # a tie does not dethrone
        ([2.0], 1.5, False, "champion", 2),  # e.g. a loss, lower is better
        ([2.0], 2.5, False, "challenger", 1),
    ],
)
def test_champion_moves_only_on_a_win(tracking, history, candidate, greater_is_better, expected_alias, champion_after):
    for value in history:
        run_id, uri = finished_run(value)
        promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL", greater_is_better=greater_is_better)
    run_id, uri = finished_run(candidate)
    result = promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL", greater_is_better=greater_is_better,
                     lineage={"dataset": "demo"})
    client = MlflowClient()
    assert result.alias == expected_alias
    assert str(client.get_model_version_by_alias("m", "champion").version) == str(champion_after)
    version = client.get_model_version("m", result.version)
    assert version.tags["source_run_id"] == run_id and version.tags["dataset"] == "demo"
    assert version.tags["metric.rougeL"] == str(candidate)
    assert version.description == result.reason


@pytest.mark.parametrize("status", ["FAILED", "RUNNING", "KILLED"])
def test_unfinished_runs_are_never_registered(tracking, status):
    run_id, uri = finished_run(0.9, status=status)
    with pytest.raises(PlatformError, match=f"run {run_id} is {status}"):
        promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    assert MlflowClient().search_registered_models() == []


def test_a_run_without_the_metric_is_not_registered(tracking):
    run_id, uri = finished_run(None)
    with pytest.raises(PlatformError, match="has no metric 'rougeL'"):
        promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    assert MlflowClient().search_registered_models() == []


def test_a_violated_constraint_keeps_the_champion_and_says_why(tracking):
    run_id, uri = finished_run(0.30)
    promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    run_id, uri = finished_run(0.90)
    result = promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL",
                     violations=["p50 latency 900 ms > 500 ms"])
    assert result.alias == "challenger"
    assert result.reason == "rougeL=0.9000 but constraints not met: p50 latency 900 ms > 500 ms"
    assert str(MlflowClient().get_model_version_by_alias("m", "champion").version) == "1"


def test_promoting_the_same_run_twice_registers_it_once(tracking):
    run_id, uri = finished_run(0.30)
    first = promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    second = promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    assert (first.version, second.version, second.alias) == ("1", "1", "champion")
    assert "already version 1 of m (@champion)" in second.reason
    assert len(MlflowClient().search_model_versions("name='m'")) == 1
