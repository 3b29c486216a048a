"""The MLproject entry points through `mlflow run`: each on its success path with documented
parameters, and bad input giving one `error:` line naming the culprit, a non-zero exit and a FAILED run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import DIALOGUES, evaluate_run, every_experiment, sentiment_rows, write_jsonl

REPO = Path(__file__).resolve().parents[2]


def mlflow_run(entry: str, cwd: Path, **params) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    args = [arg for key, value in params.items() for arg in ("-P", f"{key}={value}")]
    return subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", entry, "--env-manager", "local", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )


def test_missing_dataset_file_fails_the_mlflow_run(tracking, tmp_path):
    spec = {"name": "broken", "datasets": [{"name": "d", "train": str(tmp_path / "absent.jsonl")}],
            "methods": [{"name": "base"}]}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = mlflow_run("peft_compare", tmp_path, experiment=path)
    assert proc.returncode != 0
    assert f"error: dataset file not found: {tmp_path / 'absent.jsonl'}" in proc.stderr
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["error"].startswith("dataset file not found")
    assert client.search_registered_models() == []


def test_evaluate_entry_point_with_an_unknown_model(tracking, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"dialogue": "A: hi\\nB: hello", "summary": "They greet."}\n')
    proc = mlflow_run("evaluate", tmp_path, model_uri="models:/ghost@champion", data=data, limit=5)
    assert proc.returncode != 0
    assert "error: model URI 'models:/ghost@champion' cannot be found" in proc.stderr
    run = MlflowClient().search_runs(every_experiment())[0]
    assert run.info.status == "FAILED" and run.data.params["limit"] == "5"  # as `mlflow run` logged it


def test_hpo_entry_point_with_an_unreachable_storage(tracking, tmp_path):
    spec = {"name": "tune", "datasets": [{"name": "d", "train": str(tmp_path / "d.jsonl")}],
            "models": [{"name": "x", "source": str(tmp_path)}], "methods": [{"name": "lora"}],
            "hpo": {"space": {"methods.0.r": {"type": "int", "low": 2, "high": 8}}}}
    (tmp_path / "d.jsonl").write_text('{"dialogue": "A: hi\\nB: hello", "summary": "They greet."}\n' * 4)
    (tmp_path / "config.json").write_text("{}")
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(spec))
    storage = f"sqlite:///{tmp_path / 'missing' / 'optuna.db'}"
    proc = mlflow_run("hpo", tmp_path, experiment=path, storage=storage, n_trials=2)
    assert proc.returncode != 0
    assert f"error: optuna storage {storage} cannot be reached" in proc.stderr
    run = MlflowClient().search_runs(every_experiment())[0]
    assert run.info.status == "FAILED" and run.data.params["n_trials"] == "2"
    assert run.data.tags["error"].startswith(f"optuna storage {storage} cannot be reached")


# --- Every entry point on its success path, as documented, on tiny models -----------------------

def tiny_summarizer_spec(tmp_path, model_dir, tuned: bool = False) -> Path:
    rows = [{"dialogue": d, "summary": s} for d, s in DIALOGUES]
    spec = {"name": "tiny_grid", "models": [{"name": "tiny", "source": str(model_dir)}],
            "datasets": [{"name": "dlg", "licence": "CC0 (test fixture)",
                          "train": {"hf": "nobody/absent", "local": str(write_jsonl(tmp_path / "train.jsonl", rows))},
                          "eval": str(write_jsonl(tmp_path / "eval.jsonl", rows[:4]))}],
            "methods": [{"name": "base"}, {"name": "lora", "learning_rate": 1e-2, "r": 2}],
            "train": {"max_steps": 20, "batch_size": 4, "max_seq_len": 128},
            "generation": {"max_new_tokens": 4, "batch_size": 4},
            "registry": {"model_name": "tiny-summarizer", "metric": "rougeL"}}
    if tuned:
        spec["methods"] = spec["methods"][1:]
        spec["hpo"] = {"n_trials": 4, "metric": "rougeL",
                       "space": {"methods.0.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def succeeded(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == 0 or print(proc.stdout[-3000:], proc.stderr[-3000:])


@pytest.mark.slow
def test_peft_compare_with_overrides_then_evaluate_more_rows_than_a_request_then_promote(tracking, tmp_path,
                                                                                         tiny_lm_dir):
    spec = tiny_summarizer_spec(tmp_path, tiny_lm_dir)
    proc = mlflow_run("peft_compare", tmp_path, experiment=spec, set="train.max_steps=1 eval.max_examples=2")
    assert succeeded(proc)
    client = MlflowClient()
    parent = next(r for r in client.search_runs(every_experiment()) if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED" and parent.data.params["train.max_steps"] == "1"
    version = client.get_model_version_by_alias("tiny-summarizer", "champion")
    assert version.tags["dataset_licence"] == "CC0 (test fixture)"
    assert version.tags["data.train"] == str(tmp_path / "train.jsonl")  # the local copy, not the hub

    # 40 rows: more than a serving request may hold (16) and more than one evaluation chunk (32).
    rows = [{"dialogue": d, "summary": s} for d, s in DIALOGUES] * 5
    data = write_jsonl(tmp_path / "more.jsonl", rows)
    proc = mlflow_run("evaluate", tmp_path, model_uri="models:/tiny-summarizer@champion", data=data)
    assert succeeded(proc)
    run = evaluate_run()
    assert run.info.status == "FINISHED" and run.data.params["evaluate.rows"] == "40"
    assert run.data.params["limit"] == "0" and "rougeL" in run.data.metrics

    proc = mlflow_run("promote", tmp_path, model_name="tiny-promoted", experiment="Default", metric="rougeL",
                      max_saved_mb=50, max_p50_latency_ms=60000)
    assert succeeded(proc)
    assert client.get_model_version_by_alias("tiny-promoted", "champion").tags["dataset_licence"] == "CC0 (test fixture)"


@pytest.mark.slow
def test_evaluate_a_classifier_with_a_label_map(tracking, tmp_path, tiny_encoder_dir, sentiment_files):
    from pipelines import compare
    from tests.pipelines.test_cell_classification import write_cls_spec

    spec = write_cls_spec(tmp_path, tiny_encoder_dir, sentiment_files, [{"name": "full", "learning_rate": 3e-3}],
                          train={"max_steps": 2, "batch_size": 8, "max_seq_len": 32})
    assert compare.main([spec]) == 0
    raw = [{"review": r["text"], "stars": {"negative": 1, "positive": 5}[r["label"]]} for r in sentiment_rows(12)]
    data = write_jsonl(tmp_path / "stars.jsonl", raw + [{"review": "so so", "stars": 3}])
    proc = mlflow_run("evaluate", tmp_path, model_uri="models:/tiny-classifier@champion", data=data,
                      text_field="review", target_field="stars", label_map="1=negative,5=positive", drop_labels=3)
    assert succeeded(proc)
    run = evaluate_run()
    assert run.info.status == "FINISHED" and run.data.params["evaluate.rows"] == "12"
    assert {"accuracy", "f1_macro"} <= set(run.data.metrics)


@pytest.mark.slow
def test_hpo_with_overrides(tracking, tmp_path, tiny_lm_dir):
    spec = tiny_summarizer_spec(tmp_path, tiny_lm_dir, tuned=True)
    # A study of its own: the default journal lies in the project directory, where earlier runs of the same
    # study would already hold its trials and this run would add none.
    proc = mlflow_run("hpo", tmp_path, experiment=spec, n_trials=2, storage=f"journal:{tmp_path}/optuna.journal",
                      set="methods.0.r=4 train.max_steps=1 eval.max_examples=2")
    assert succeeded(proc)
    runs = MlflowClient().search_runs(every_experiment())
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED" and parent.data.params["optuna.n_trials"] == "2"
    assert parent.data.params["methods.0.r"] == "4"
    assert sum(1 for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id) == 2
