"""Promotion rules, table-driven: first / better / worse / lower-is-better / failed / no metric / twice,
and like with like: a champion is compared only on the eval data the candidate was scored on."""
from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from pipelines.errors import PlatformError
from pipelines.sources.datasets import Example
from pipelines.tracked_data import EVALUATION, log_examples
from registry.promote import AWAITS_TAG, promote
from tests.conftest import DIALOGUES

DLG = [Example(d, (s,), row) for row, (d, s) in enumerate(DIALOGUES[:4], start=1)]
OTHER = [Example(d, (s,), row) for row, (d, s) in enumerate(DIALOGUES[4:], start=1)]


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def finished_run(value: float | None, status: str = "FINISHED", data: tuple[str, list] | None = ("dlg", DLG)
                 ) -> tuple[str, str]:
    """A run scored `value` on `data` (name, examples), logged as a grid cell logs it; None: a run
    logged before runs recorded their data."""
    with mlflow.start_run() as run:
        if data is not None:
            log_examples(data[1], f"{data[0]}/eval", f"/data/{data[0]}/eval.jsonl", EVALUATION)
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
    assert version.tags["eval_data"] == "dlg/eval"  # every run here was scored on the same rows: compared
    assert version.tags["eval_digest"] == client.get_model_version("m", "1").tags["eval_digest"]
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


def rescore(model_uri: str, value: float, data: list[Example], name: str = "other/eval") -> str:
    """What `pipelines.evaluate` logs when it scores a model: metrics linked to its logged model
    and to the dataset of the rows it scored."""
    model_id = mlflow.models.get_model_info(model_uri).model_id
    with mlflow.start_run(run_name="evaluate") as run:
        dataset = log_examples(data, name, "/data/other/eval.jsonl", EVALUATION)
        mlflow.log_metrics({"rougeL": value}, model_id=model_id, dataset=dataset)
    return run.info.run_id


def test_a_better_score_on_other_data_does_not_replace_the_champion_and_says_why(tracking, capsys):
    run_id, uri = finished_run(0.30)
    promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    run_id, uri = finished_run(0.90, data=("other", OTHER))
    result = promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    client = MlflowClient()
    champion, candidate = client.get_model_version("m", "1"), client.get_model_version("m", result.version)
    assert result.alias == "challenger"
    assert str(client.get_model_version_by_alias("m", "champion").version) == "1"
    assert candidate.description == result.reason and candidate.tags[AWAITS_TAG] == "1"
    assert champion.tags["eval_digest"] != candidate.tags["eval_digest"]
    assert result.reason.startswith("rougeL=0.9000 not compared: eval data differs: champion v1 scored on dlg/eval "
                                    f"(digest {champion.tags['eval_digest']}, from /data/dlg/eval.jsonl), candidate on "
                                    f"other/eval (digest {candidate.tags['eval_digest']}, from /data/other/eval.jsonl)")
    assert "`python -m pipelines.evaluate models:/m/1 /data/other/eval.jsonl`" in result.reason


@pytest.mark.parametrize("rescored, expected_alias", [(0.95, "challenger"), (0.50, "champion")])
def test_a_champion_rescored_on_the_candidates_data_is_compared_there(tracking, rescored, expected_alias):
    run_id, uri = finished_run(0.30)
    promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    candidate_run, candidate_uri = finished_run(0.90, data=("other", OTHER))
    waiting = promote(model_uri=candidate_uri, run_id=candidate_run, name="m", metric="rougeL")
    by = rescore("models:/m/1", rescored, OTHER)
    again = promote(model_uri=candidate_uri, run_id=candidate_run, name="m", metric="rougeL")
    client = MlflowClient()
    assert again.version == waiting.version and len(client.search_model_versions("name='m'")) == 2
    assert again.alias == expected_alias
    assert f"champion v1 ({rescored:.4f}, re-scored on this data by run {by})" in again.reason
    champion = client.get_model_version_by_alias("m", "champion")
    assert str(champion.version) == ("2" if expected_alias == "champion" else "1")
    decided = client.get_model_version("m", waiting.version)
    assert AWAITS_TAG not in decided.tags and decided.description == again.reason
    assert "already version 2" in promote(model_uri=candidate_uri, run_id=candidate_run, name="m",
                                          metric="rougeL").reason  # decided once and for all


def test_a_rescore_on_yet_other_data_does_not_count(tracking):
    run_id, uri = finished_run(0.30)
    promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    rescore("models:/m/1", 0.10, DLG[:2], name="dlg/eval-half")
    run_id, uri = finished_run(0.90, data=("other", OTHER))
    assert "not compared: eval data differs" in promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL").reason


@pytest.mark.parametrize("champion_data, candidate_data, named", [
    (None, ("dlg", DLG), "champion v1 scored on data it did not record, candidate on dlg/eval"),
    (("dlg", DLG), None, "candidate on data it did not record; only a run that recorded its eval data"),
])
def test_unrecorded_eval_data_is_never_taken_for_the_same(tracking, champion_data, candidate_data, named):
    run_id, uri = finished_run(0.30, data=champion_data)
    promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    run_id, uri = finished_run(0.90, data=candidate_data)
    result = promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
    assert result.alias == "challenger" and named in result.reason
    assert str(MlflowClient().get_model_version_by_alias("m", "champion").version) == "1"
