"""The MLproject entry points through `mlflow run`: bad input gives one `error:` line naming the
culprit, a non-zero exit and a FAILED run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow import MlflowClient

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
    run = MlflowClient().search_runs(["0"])[0]
    assert run.info.status == "FAILED" and run.data.params["limit"] == "5"


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
    run = MlflowClient().search_runs(["0"])[0]
    assert run.info.status == "FAILED" and run.data.params["n_trials"] == "2"
    assert run.data.tags["error"].startswith(f"optuna storage {storage} cannot be reached")
