"""Against the real team server (PostgreSQL, basic auth, artifact proxy): two grids at once lose
nothing and promote the better cell; a server that is down or refuses the credentials is a
one-line error with the password hidden."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]


def grid_spec(tmp_path: Path, model_dir: Path, files, name: str, model_name: str, learning_rate: float) -> Path:
    spec = {"name": name, "models": [{"name": "tiny", "source": str(model_dir)}],
            "datasets": [{"name": "dlg", "train": str(files["train"]), "eval": str(files["eval"])}],
            "methods": [{"name": "full", "learning_rate": learning_rate}, {"name": "lora", "learning_rate": 1e-2, "r": 2}],
            "train": {"max_steps": 3, "batch_size": 4, "log_every": 1, "max_seq_len": 128},
            "generation": {"max_new_tokens": 4, "batch_size": 4},
            "registry": {"model_name": model_name, "metric": "eval_loss", "greater_is_better": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def compare(spec: Path, experiment: str, **env) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_EXPERIMENT_NAME": experiment, "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "pipelines.compare", str(spec)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_grids_at_once_keep_every_run_and_end_on_the_better_champion(server_tracking, tmp_path, tiny_lm_dir,
                                                                          dialogue_files):
    unique = uuid.uuid4().hex[:8]
    model_name, experiment = f"shared-{unique}", f"two_grids_{unique}"
    grids = [compare(grid_spec(tmp_path, tiny_lm_dir, dialogue_files, f"grid{i}_{unique}", model_name, lr), experiment)
             for i, lr in enumerate((1e-3, 3e-3))]
    outputs = [grid.communicate(timeout=600)[0] for grid in grids]
    assert [g.returncode for g in grids] == [0, 0], "\n".join(o[-2000:] for o in outputs)

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    cells = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and len(cells) == 4
    assert all(r.info.status == "FINISHED" for r in runs)
    for cell in cells:
        steps = [m.step for m in client.get_metric_history(cell.info.run_id, "train_loss")]
        assert steps == sorted(set(steps)) and len(steps) == 3, (cell.info.run_name, steps)
        assert "eval_loss" in cell.data.metrics
    versions = client.search_model_versions(f"name='{model_name}'")
    assert len(versions) == 2  # each grid registers its best cell
    champion = client.get_model_version_by_alias(model_name, "champion")
    best = min(float(v.tags["metric.eval_loss"]) for v in versions)
    assert float(champion.tags["metric.eval_loss"]) == best
    assert client.search_registered_models(f"name = '{model_name}.promotion-lock'") == []


def run_promote(**env) -> subprocess.CompletedProcess:
    env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "pipelines.promote", "--experiment", "none", "--model-name", "x"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_server_that_does_not_answer_is_one_line_with_the_password_hidden():
    done = run_promote(MLFLOW_TRACKING_URI="http://alice:s3cret@127.0.0.1:9")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: tracking server http://alice:***@127.0.0.1:9 does not answer: [Errno 111] Connection refused"]


@pytest.mark.slow
def test_refused_credentials_are_one_line_naming_server_and_user(server_tracking):
    done = run_promote(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="not-the-password")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: tracking server {server_tracking} refuses the credentials of user 'admin'"]
    assert "not-the-password" not in done.stdout + done.stderr
