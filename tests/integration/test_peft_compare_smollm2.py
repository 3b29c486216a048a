"""The real thing, briefly: `mlflow run . -e peft_compare` on the packaged SmolLM2, offline."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_mlflow_run_peft_compare_on_packaged_smollm2(tracking, tmp_path):
    spec = yaml.safe_load((REPO / "experiments" / "dialogsum_demo.yaml").read_text())
    spec["name"] = "smollm2_smoke"
    for dataset in spec["datasets"]:
        dataset["train"] = str(REPO / dataset["train"])
        dataset["eval"] = str(REPO / dataset["eval"])
        dataset["max_train_rows"], dataset["max_eval_rows"] = 8, 3
    spec["train"].update(max_steps=2, batch_size=4, max_minutes=None)
    spec["generation"]["max_new_tokens"] = 8
    spec["eval"]["max_examples"] = 3
    spec["registry"]["model_name"] = "smollm2-smoke"
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(spec))

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "peft_compare", "--env-manager", "local",
         "-P", f"experiment={path}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| smollm2-135m | dialogsum_demo | lora" in proc.stdout

    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["method"] for r in children) == ["base", "full", "lora"]
    assert all(r.info.status == "FINISHED" for r in runs)
    lora = next(r for r in children if r.data.tags["method"] == "lora").data.metrics
    full = next(r for r in children if r.data.tags["method"] == "full").data.metrics
    assert lora["saved_bytes"] < 0.02 * full["saved_bytes"]
    assert lora["params_total"] > 134_000_000
    assert client.get_model_version_by_alias("smollm2-smoke", "champion")
