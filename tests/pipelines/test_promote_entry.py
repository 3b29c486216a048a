"""The promote entry point: best finished run, constraints, idempotence, clear errors."""
from __future__ import annotations

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines import compare
from pipelines import promote as promote_entry
from tests.pipelines.test_compare import write_spec

REGISTRY_OFF = {"model_name": "tiny-summarizer", "metric": "rougeL", "promote": False}


@pytest.fixture
def grid(tracking, tmp_path, tiny_lm_dir, dialogue_files):
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files, registry=REGISTRY_OFF,
                      methods=[{"name": "base"}, {"name": "lora", "r": 2}])
    assert compare.main([spec]) == 0
    assert MlflowClient().search_registered_models() == []
    return str(spec)  # the spec names the experiment its runs went to


def test_registers_the_best_run_with_lineage_and_is_safe_twice(grid, capsys):
    assert promote_entry.main(["--experiment", grid, "--model-name", "m", "--max-p50-latency-ms", "60000",
                               "--latency-samples", "2"]) == 0
    client = MlflowClient()
    champion = client.get_model_version_by_alias("m", "champion")
    assert champion.tags["experiment_spec"] == "tiny_compare" and champion.tags["dataset"] == "dlg"
    assert champion.tags["parent_run_id"] and champion.description.startswith("first champion")
    assert promote_entry.main(["--experiment", grid, "--model-name", "m"]) == 0
    assert "already version 1 of m (@champion)" in capsys.readouterr().out
    assert len(client.search_model_versions("name='m'")) == 1


def test_a_violated_constraint_registers_a_challenger(grid, capsys):
    assert promote_entry.main(["--experiment", grid, "--model-name", "m", "--max-p50-latency-ms", "0.001",
                               "--latency-samples", "1"]) == 0
    out = capsys.readouterr().out
    assert "@challenger" in out and "constraints not met: p50 latency" in out
    with pytest.raises(MlflowException, match="alias champion not found"):
        MlflowClient().get_model_version_by_alias("m", "champion")


@pytest.mark.parametrize("args, message", [
    (["--experiment", "nope"], "experiment 'nope' does not exist"),
    (["--experiment", "Default"], "experiment 'Default' has no finished run with metric 'rougeL' and a logged model"),
    (["--metric", "accuracy"], "experiment 'tiny_compare' has no finished run with metric 'accuracy' and a logged model"),
])
def test_nothing_to_promote_is_a_clear_error(grid, args, message, capsys):
    assert promote_entry.main(["--experiment", grid, "--model-name", "m", *args]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert MlflowClient().search_registered_models() == []
