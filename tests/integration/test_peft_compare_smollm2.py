"""The real thing, briefly: `mlflow run . -e peft_compare` on the packaged SmolLM2, offline, against
the team tracking server (PostgreSQL, basic auth, artifact proxy) as a team member would run it."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_mlflow_run_peft_compare_on_packaged_smollm2(server_tracking, tmp_path):
    unique = uuid.uuid4().hex[:8]  # the server outlives the test: its names must not collide with earlier runs
    spec = yaml.safe_load((REPO / "experiments" / "dialogsum_demo.yaml").read_text())
    spec["name"] = f"smollm2_smoke_{unique}"
    for dataset in spec["datasets"]:
        dataset["train"] = str(REPO / dataset["train"])
        dataset["eval"] = str(REPO / dataset["eval"])
        dataset["max_train_rows"], dataset["max_eval_rows"] = 8, 3
    spec["train"].update(max_steps=2, batch_size=4, max_minutes=None)
    spec["generation"]["max_new_tokens"] = 8
    spec["eval"]["max_examples"] = 3
    spec["registry"]["model_name"] = f"smollm2-smoke-{unique}"
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(spec))

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "peft_compare", "--env-manager", "local",
         "--experiment-name", spec["name"], "-P", f"experiment={path}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| smollm2-135m | dialogsum_demo | lora" in proc.stdout

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(spec["name"]).experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["method"] for r in children) == ["base", "full", "lora"]
    assert all(r.info.status == "FINISHED" for r in runs)
    lora = next(r for r in children if r.data.tags["method"] == "lora").data.metrics
    full = next(r for r in children if r.data.tags["method"] == "full").data.metrics
    assert lora["saved_bytes"] < 0.02 * full["saved_bytes"]
    assert lora["params_total"] > 134_000_000
    assert client.get_model_version_by_alias(spec["registry"]["model_name"], "champion")
    # the cells' models went through the server's artifact proxy, not to a local path
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:") for r in runs)
