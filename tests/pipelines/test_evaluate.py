"""The `evaluate` entry point on a logged model, and its failures on bad input."""
from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from pipelines import compare, evaluate
from pipelines.tracked_data import evaluation_input
from registry.promote import promote
from tests.conftest import DIALOGUES, evaluate_run, every_experiment, write_jsonl
from tests.pipelines.test_compare import write_spec


@pytest.fixture
def logged_model(tracking, tmp_path, tiny_lm_dir, dialogue_files):
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files, methods=[{"name": "lora", "r": 2}])
    assert compare.main([spec]) == 0
    return MlflowClient().get_model_version_by_alias("tiny-summarizer", "champion")


def other_dataset(tmp_path):
    rows = [{"conversation": d, "gist": [s, s.upper()]} for d, s in DIALOGUES[2:7]]
    return write_jsonl(tmp_path / "other" / "set.jsonl", rows)


def test_scores_a_registered_model_on_another_dataset_and_links_the_result(logged_model, tmp_path):
    data = other_dataset(tmp_path)
    assert evaluate.main(["models:/tiny-summarizer@champion", str(data), "--text-field", "conversation",
                          "--target-field", "gist", "--limit", "4"]) == 0
    client = MlflowClient()
    run = evaluate_run()
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "evaluate_tiny-summarizer"  # not the grid's
    assert run.data.params["evaluate.rows"] == "4"
    assert run.data.params["evaluate.model_uri"] == "models:/tiny-summarizer@champion"
    assert {"rouge1", "rougeL", "bleu", "precision_1"} <= set(run.data.metrics)
    assert run.data.tags["evaluated_run_id"] == logged_model.run_id
    model_id = run.data.tags["evaluated_model_id"]
    linked = {m.key for m in client.get_logged_model(model_id).metrics or []}
    assert "rougeL" in linked
    assert "predictions.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_runs_uri_of_a_cell_works_too(logged_model, tmp_path):
    data = other_dataset(tmp_path)
    uri = f"runs:/{logged_model.run_id}/model"
    assert evaluate.main([uri, str(data), "--text-field", "conversation", "--target-field", "gist"]) == 0


def test_mismatched_data_fails_before_loading_the_model(tracking, tmp_path, monkeypatch, capsys):
    def must_not_load(*args, **kwargs):
        raise AssertionError("model loaded before the data was checked")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", must_not_load)
    monkeypatch.setattr(evaluate, "model_info", must_not_load)
    data = other_dataset(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["models:/anything@champion", str(data)])  # default fields: dialogue/summary
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {data} row 1: field 'dialogue' is missing"
    run = MlflowClient().search_runs(every_experiment())[0]
    assert run.info.status == "FAILED" and "field 'dialogue' is missing" in run.data.tags["error"]


def test_a_model_uri_that_does_not_exist(tracking, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"dialogue": d, "summary": s} for d, s in DIALOGUES[:2]])
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["models:/no-such-model@champion", str(data)])
    assert exit_info.value.code == 2
    assert "error: model URI 'models:/no-such-model@champion' cannot be found" in capsys.readouterr().err


@pytest.fixture
def logged_classifier(tracking, tmp_path, tiny_encoder_dir, sentiment_files):
    from tests.pipelines.test_cell_classification import write_cls_spec

    spec = write_cls_spec(tmp_path, tiny_encoder_dir, sentiment_files, [{"name": "full", "learning_rate": 3e-3}])
    assert compare.main([spec]) == 0
    return MlflowClient().get_model_version_by_alias("tiny-classifier", "champion")


def test_a_classifier_is_scored_on_another_labelled_set_with_mapped_and_dropped_labels(logged_classifier, tmp_path):
    from tests.conftest import sentiment_rows

    rows = [{"sentence": r["text"], "stars": {"negative": 1, "positive": 5}[r["label"]], "site": site}
            for site in ("a", "b") for r in sentiment_rows(10, seed=3)]
    rows.append({"sentence": "the film was a film", "stars": 3, "site": "a"})
    data = write_jsonl(tmp_path / "reviews.jsonl", rows)
    assert evaluate.main(["models:/tiny-classifier@champion", str(data), "--text-field", "sentence",
                          "--target-field", "stars", "--label-map", "1=negative,5=positive", "--drop-labels", "3",
                          "--where", "site=a"]) == 0
    run = evaluate_run()
    assert run.data.params["evaluate.rows"] == "10"  # site a only, the 3-star row dropped
    assert {"accuracy", "f1_macro", "precision_macro", "recall_macro", "ece"} <= set(run.data.metrics)
    assert run.data.metrics["accuracy"] >= 0.7
    assert "confusion_matrix.png" in {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}


def test_a_label_the_classifier_does_not_know_fails_before_loading_it(logged_classifier, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mlflow.pyfunc, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    data = write_jsonl(tmp_path / "r.jsonl", [{"text": "fine", "label": "neutral"}])
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["models:/tiny-classifier@champion", str(data), "--text-field", "text", "--target-field", "label"])
    assert exit_info.value.code == 2
    assert "row 1: label 'neutral' is not one the model predicts ['negative', 'positive']" in capsys.readouterr().err


def test_the_served_task_comes_from_the_config_or_for_older_models_the_signature():
    from types import SimpleNamespace

    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from pipelines.errors import PlatformError
    from pipelines.tasks import get_task

    def info(outputs, config):
        signature = ModelSignature(inputs=Schema([ColSpec("string", "x")]),
                                   outputs=Schema([ColSpec("string", o) for o in outputs]))
        return SimpleNamespace(signature=signature, flavors={"python_function": {"config": config}})

    assert evaluate.served_task(info(["summary"], {}), "m")[0] is get_task("summarization")  # logged before configs
    assert evaluate.served_task(info(["label"], {"task": "classification"}), "m") == (get_task("classification"), "x")
    assert evaluate.served_task(info(["continuation"], {}), "m")[0] is get_task("language_modeling")
    with pytest.raises(PlatformError, match="model 'm' has no signature this entry point can score"):
        evaluate.served_task(info(["vector"], {}), "m")
    with pytest.raises(PlatformError, match="a language model is scored in bits per byte by peft_compare"):
        get_task("language_modeling").served_examples([], {}, {}, [], "d.jsonl")


def test_the_command_a_refused_promotion_names_rescores_the_champion_and_promotion_then_decides(
        tracking, tmp_path, tiny_lm_dir, dialogue_files):
    """A champion crowned on dlg; a grid scored on other rows waits as challenger; the command in its
    reason re-scores the champion on those very rows (the digest a cell logs), and promoting the
    waiting run again compares the two there."""
    rows = [{"dialogue": d, "summary": s} for d, s in DIALOGUES[4:]]
    other = {"train": dialogue_files["train"], "eval": write_jsonl(tmp_path / "other" / "eval.jsonl", rows)}
    for files in (dialogue_files, other):
        assert compare.main([write_spec(tmp_path, tiny_lm_dir, files, methods=[{"name": "base"}])]) == 0
    client = MlflowClient()
    waiting = client.get_model_version_by_alias("tiny-summarizer", "challenger")
    assert str(waiting.version) == "2" and "not compared: eval data differs" in waiting.description
    command = waiting.description.split("`")[1].split()
    assert command == ["python", "-m", "pipelines.evaluate", "models:/tiny-summarizer/1", str(other["eval"]),
                       "--text-field", "dialogue", "--target-field", "summary"]
    assert evaluate.main(command[3:]) == 0
    rescoring = evaluate_run()
    assert evaluation_input(rescoring).digest == waiting.tags["eval_digest"]
    run_id = waiting.tags["source_run_id"]
    result = promote(model_uri=client.get_run(run_id).data.tags["model_uri"], run_id=run_id, name="tiny-summarizer",
                     metric="rougeL")
    assert result.version == "2" and f"re-scored on this data by run {rescoring.info.run_id}" in result.reason
    champion = client.get_model_version_by_alias("tiny-summarizer", "champion")
    assert str(champion.version) == ("2" if result.alias == "champion" else "1")
