"""Classification cells end to end on tiny random models: an encoder and a decoder each learn a
separable sentiment set well beyond chance, and everything a cell promises is logged."""
from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import torch
import yaml
from mlflow import MlflowClient

from pipelines import compare
from tests.pipelines.test_compare import runs_of


def write_cls_spec(tmp_path, model_dir, files, methods, **overrides) -> str:
    spec = {
        "name": "tiny_cls",
        "task": "classification",
        "models": [{"name": "tiny", "source": str(model_dir)}],
        "datasets": [{"name": "sent", "train": str(files["train"]), "eval": str(files["eval"]),
                      "text_field": "text", "target_field": "label"}],
        "methods": methods,
        "train": {"epochs": 6, "batch_size": 8, "log_every": 4, "max_seq_len": 32, "warmup_ratio": 0.0},
        "registry": {"model_name": "tiny-classifier", "metric": "accuracy"},
    }
    spec.update(overrides)
    path = tmp_path / "cls.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("model_fixture, methods", [
    ("tiny_encoder_dir", [{"name": "full", "learning_rate": 3e-3}, {"name": "lora", "learning_rate": 5e-3, "r": 8, "dropout": 0.0}]),
    ("tiny_lm_dir", [{"name": "lora", "learning_rate": 5e-3, "r": 8, "dropout": 0.0}]),
])
def test_tiny_classifiers_beat_chance_and_log_what_a_cell_promises(request, tracking, tmp_path, sentiment_files,
                                                                   model_fixture, methods):
    spec = write_cls_spec(tmp_path, request.getfixturevalue(model_fixture), sentiment_files, methods,
                          train={"epochs": 10, "batch_size": 8, "log_every": 12, "max_seq_len": 32,
                                 "warmup_ratio": 0.0, "eval_every_steps": 30, "eval_subset": 32})
    assert compare.main([spec]) == 0
    client = MlflowClient()
    children = [r for r in runs_of(client) if "mlflow.parentRunId" in r.data.tags]
    assert {r.data.tags["method"] for r in children} == {m["name"] for m in methods}
    for run in children:
        metrics = run.data.metrics
        assert run.info.status == "FINISHED"
        assert metrics["accuracy"] >= 0.7, (run.data.tags["method"], metrics["accuracy"])  # chance is 0.5
        for key in ("f1_macro", "precision_macro", "recall_macro", "ece", "eval_loss", "tokens_per_example",
                    "unknown_token_share", "split_word_share", "train_tokens_per_s", "peak_rss_mb", "saved_bytes"):
            assert key in metrics, key
        assert "val_accuracy" in {m.key for m in client.get_metric_history(run.info.run_id, "val_accuracy")}
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"confusion_matrix.png", "predictions.json"} <= artifacts
    served = mlflow.pyfunc.load_model("models:/tiny-classifier@champion")
    out = served.predict(pd.DataFrame({"text": ["the movie was great fun", "the plot was awful and dull"]}))
    assert list(out["label"]) == ["positive", "negative"]
    assert ((out["probability"] > 0.5) & (out["probability"] <= 1)).all()
    assert ((out["p_negative"] + out["p_positive"] - 1).abs() < 1e-5).all()


def test_labels_outside_the_declared_set_fail_before_any_model_loads(tracking, tmp_path, sentiment_files, capsys):
    spec = write_cls_spec(tmp_path, "package:does-not-matter", sentiment_files, [{"name": "lora"}])
    data = yaml.safe_load(open(spec))
    data["datasets"][0]["labels"] = ["negative", "neutral"]
    open(spec, "w").write(yaml.safe_dump(data))
    with pytest.raises(SystemExit) as exit_info:
        compare.main([spec])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "label 'positive' is not in the declared labels ['negative', 'neutral']" in err and "row 2" in err


def test_a_multiclass_set_is_refused_as_binary_unless_labels_are_declared(tracking, tmp_path, capsys):
    from tests.conftest import sentiment_rows, write_jsonl

    rows = sentiment_rows(12) + [{"text": "the film was fine", "label": "neutral"}]
    files = {"train": write_jsonl(tmp_path / "t.jsonl", rows), "eval": write_jsonl(tmp_path / "e.jsonl", rows)}
    spec = write_cls_spec(tmp_path, "package:does-not-matter", files, [{"name": "lora"}])
    with pytest.raises(SystemExit) as exit_info:
        compare.main([spec])
    assert exit_info.value.code == 2
    assert "binary by default but its train split has 3 labels" in capsys.readouterr().err


def test_a_classification_cell_honours_bf16_and_checkpointing(tracking, tmp_path, tiny_encoder_dir, sentiment_files,
                                                             monkeypatch):
    """The training-only set-up (bf16 frozen base, checkpointing) applies to classifiers too, and
    validation during training runs on that bf16 base."""
    from pipelines import train_setup

    checkpointed, cast = [], []
    enable, to_dtype = train_setup._enable_checkpointing, train_setup.frozen_weights_to
    monkeypatch.setattr(train_setup, "_enable_checkpointing", lambda m, share=1.0: checkpointed.append(type(m).__name__) or enable(m, share))
    monkeypatch.setattr(train_setup, "frozen_weights_to",
                        lambda m, dtype: cast.append(dtype) or to_dtype(m, dtype))
    spec = write_cls_spec(tmp_path, tiny_encoder_dir, sentiment_files,
                          [{"name": "lora", "learning_rate": 5e-3, "r": 4, "dropout": 0.0}],
                          train={"max_steps": 4, "batch_size": 8, "log_every": 2, "max_seq_len": 32,
                                 "warmup_ratio": 0.0, "eval_every_steps": 2, "eval_subset": 8,
                                 "precision": "bfloat16", "gradient_checkpointing": True})
    assert compare.main([spec]) == 0
    (child,) = [r for r in runs_of(MlflowClient()) if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED" and child.data.metrics["train_steps"] == 4
    history = MlflowClient().get_metric_history(child.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [2, 4]
    assert len(checkpointed) == 1 and cast == [torch.bfloat16]  # the set-up ran, once, in bf16


def test_a_classification_cell_reports_mfu_through_the_one_formula(tracking, tmp_path, tiny_encoder_dir,
                                                                    sentiment_files, monkeypatch):
    from pipelines import cell, efficiency

    calls = []
    monkeypatch.setattr(cell, "mfu", lambda *args: calls.append(args) or efficiency.mfu(*args))
    spec = write_cls_spec(tmp_path, tiny_encoder_dir, sentiment_files, [{"name": "lora", "r": 4}],
                          train={"max_steps": 2, "batch_size": 8, "log_every": 2, "max_seq_len": 32})
    assert compare.main([spec]) == 0
    (child,) = [r for r in runs_of(MlflowClient()) if "mlflow.parentRunId" in r.data.tags]
    metrics = child.data.metrics
    assert calls == [(metrics["train_tokens_per_s"], metrics["train_flops_per_token"], metrics["peak_flops"])]
    assert metrics["mfu"] == efficiency.mfu(*calls[0])
