"""Bad input through `mlflow run`: one `error:` line naming the culprit, non-zero exit, FAILED run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]


def test_missing_dataset_file_fails_the_mlflow_run(tracking, tmp_path):
    spec = {"name": "broken", "datasets": [{"name": "d", "train": str(tmp_path / "absent.jsonl")}],
            "methods": [{"name": "base"}]}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "peft_compare", "--env-manager", "local",
         "-P", f"experiment={path}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode != 0
    assert f"error: dataset file not found: {tmp_path / 'absent.jsonl'}" in proc.stderr
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["error"].startswith("dataset file not found")
    assert client.search_registered_models() == []
