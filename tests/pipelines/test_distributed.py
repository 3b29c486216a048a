"""torchrun from the same spec: two CPU processes compute the one-process losses with the same global
batch, log one run, resume exactly, and stop naming a rank that died, hung or failed."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient

from pipelines import distributed
from pipelines.batches import share_of
from pipelines.errors import PlatformError
from tests.conftest import DIALOGUES, write_jsonl
from tests.pipelines import ddp_worker

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(args: list[str], timeout: float = 240, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env}
    return subprocess.run([*TORCHRUN, *args], check=False, cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=timeout)


def test_each_rank_takes_every_nth_example_of_the_global_batch():
    batch = [4, 9, 2, 7, 5]
    assert [share_of(batch, r, 2) for r in range(2)] == [[4, 2, 5], [9, 7]]
    assert [share_of([3], r, 2) for r in range(2)] == [[3], []]  # an empty share: weighted 0 by the loop
    assert sorted(i for r in range(3) for i in share_of(batch, r, 3)) == sorted(batch)


def test_more_processes_than_gpus_or_a_bad_timeout_fail_with_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    # One GPU, so that the device check at the start lets `cuda` through to the per-process one.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(PlatformError, match=r"--nproc_per_node=4 with train.device=cuda: this machine has 1 CUDA"):
        distributed.device("cuda")
    monkeypatch.undo()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(PlatformError, match="train.device=mps: data-parallel training runs on CPUs|device: .mps. is not available"):
        distributed.device("mps")
    assert distributed.device("cpu") == torch.device("cpu")
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(PlatformError, match="ADAPTLAB_COLLECTIVE_TIMEOUT_S='soon': expected seconds"):
        distributed.collective_timeout()


@pytest.mark.slow
def test_two_processes_compute_the_one_process_losses_and_resume_exactly(tiny_lm_dir, tmp_path):
    out = tmp_path / "ddp" / "losses.json"
    out.parent.mkdir()
    done = torchrun(["-m", "tests.pipelines.ddp_worker", "losses", str(tiny_lm_dir), str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads(out.read_text())
    one = ddp_worker.losses(str(tiny_lm_dir), tmp_path, resume=False)
    for name in ddp_worker.RUNS:  # losses and the pre-clipping gradient norms, step by step
        assert len(two[name][0]) == len(one[name][0]) == ddp_worker.RUNS[name][1]["max_steps"], name
        torch.testing.assert_close(torch.tensor(two[name]), torch.tensor(one[name]), rtol=0, atol=1e-5, msg=name)
    # LoRA with dropout, killed at step 3 and resumed on two processes: the uninterrupted two-process losses
    resumed = two["resumed: after the kill"]
    assert len(resumed) == 3  # steps 3 (logged again: the kill came before its checkpoint), 4, 5
    torch.testing.assert_close(torch.tensor(resumed), torch.tensor(two["resumed: uninterrupted"][2:]), rtol=0, atol=1e-6)


class FakeStore(dict):
    """torchrun's key-value store, as the roll call uses it."""

    def set(self, key, value):
        self[key] = value.encode()

    def check(self, keys):
        return all(k in self for k in keys)


def test_the_roll_call_names_who_died_who_failed_and_who_did_not_answer(monkeypatch):
    store = FakeStore()
    monkeypatch.setattr(distributed, "_job", distributed._Job())
    distributed._job.store = store
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    monkeypatch.setattr(distributed, "world_size", lambda: 5)
    monkeypatch.setattr(distributed, "ROLL_CALL_S", 0.2)
    exited = subprocess.Popen(["true"])
    exited.wait()
    host = socket.gethostname()
    for r, pid in ((1, exited.pid), (2, os.getpid()), (3, os.getpid()), (4, os.getpid())):
        store.set(f"adaptlab/pid/{r}", f"{host} {pid}")
    store.set("adaptlab/status/2", "failed: OutOfMemoryError: CUDA out of memory")  # what `failed_alone` leaves
    store.set("adaptlab/status/4", "alive")  # another survivor
    failure = distributed._roll_call(RuntimeError("[gloo] Connection closed by peer"))
    assert str(failure) == ("rank 1 died; rank 2 failed: OutOfMemoryError: CUDA out of memory; rank 3 did not "
                            "answer within 50 s (hung?); rank 0 stopped too ([gloo] Connection closed by peer)")
    assert isinstance(failure, PlatformError) and distributed._job.failing


@pytest.mark.slow
@pytest.mark.parametrize("scenario, named", [("die", "rank 1 died"), ("hang", "rank 1 did not answer within 5 s")])
def test_a_dead_or_hung_rank_stops_the_others_and_is_named(scenario, named, tiny_lm_dir, tmp_path):
    out = tmp_path / "error.json"
    started = time.monotonic()
    done = torchrun(["-m", "tests.pipelines.ddp_worker", scenario, str(tiny_lm_dir), str(out)], timeout=120,
                    ADAPTLAB_COLLECTIVE_TIMEOUT_S="5")
    assert time.monotonic() - started < 60, "the job did not stop within the collective timeout"
    assert done.returncode != 0
    error = json.loads(out.read_text())["error"]
    assert error.startswith(named) and "rank 0 stopped too" in error, error


def tiny_spec(tmp_path: Path, model_dir: Path) -> Path:
    rows = [{"dialogue": d, "summary": s} for d, s in DIALOGUES]
    spec = {
        "name": "tiny_ddp", "seed": 11,
        "models": [{"name": "tiny", "source": str(model_dir)}],
        "datasets": [{"name": "dlg", "train": str(write_jsonl(tmp_path / "train.jsonl", rows * 2)),
                      "eval": str(write_jsonl(tmp_path / "eval.jsonl", rows[:2]))}],
        "methods": [{"name": "full", "learning_rate": 1e-3}],
        "train": {"max_steps": 2, "batch_size": 4, "grad_accum": 2, "log_every": 1, "max_seq_len": 128,
                  "eval_every_steps": 1, "eval_subset": 2, "checkpoint_every_minutes": 1e-6,
                  "checkpoint_dir": str(tmp_path / "ckpt"), "device": "cpu"},
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "registry": {"promote": False},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_peft_compare_on_two_processes_logs_one_run(tiny_lm_dir, tmp_path):
    """As under `mlflow run`: a run opened for the job, its id in MLFLOW_RUN_ID, which only rank 0
    may take; the cell validates (rank 0 alone) and checkpoints at every step. The losses are those
    of one process: the test above, on the same loop."""
    spec = tiny_spec(tmp_path, tiny_lm_dir)
    store = f"sqlite:///{tmp_path / 'ddp.db'}"
    client = MlflowClient(store)
    parent = client.create_run(client.create_experiment("ddp")).info
    done = subprocess.run([sys.executable, "-m", "pipelines.compare", str(spec), "--processes", "2"], check=False,
                          cwd=ROOT,
                          env={**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_RUN_ID": parent.run_id,
                               "MLFLOW_EXPERIMENT_ID": parent.experiment_id, "PYTHONUNBUFFERED": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("step 1/2") == 1, "one log: rank 0's"
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2, "one parent and one cell, not one of each per process"
    cell = next(r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.run_id)
    assert cell.info.status == "FINISHED" and client.get_run(parent.run_id).info.status == "FINISHED"
    for metric in ("train_loss", "val_rougeL"):
        assert [m.step for m in client.get_metric_history(cell.info.run_id, metric)] == [1, 2], metric
    assert cell.data.metrics["train_examples"] == 2 * 2 * 4  # the global batches, counted once: 2 steps x 2 x 4 rows
    assert "eval_loss" in cell.data.metrics and cell.data.params["train.batch_size"] == "4"
    assert "model_uri" in cell.data.tags
    assert not list((tmp_path / "ckpt").rglob("step-*.pt"))  # written at every step by rank 0, cleared at the end


@pytest.mark.slow
def test_hpo_under_torchrun_trains_each_trial_on_both_ranks_and_logs_it_once(tiny_lm_dir, tmp_path):
    spec = yaml.safe_load(tiny_spec(tmp_path, tiny_lm_dir).read_text())
    spec["hpo"] = {"n_trials": 2, "metric": "rougeL", "pruner": {"type": "none"},
                   "space": {"methods.0.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
    path = tmp_path / "hpo.yaml"
    path.write_text(yaml.safe_dump(spec))
    store = f"sqlite:///{tmp_path / 'hpo.db'}"
    done = torchrun(["-m", "pipelines.hpo", str(path), "--storage", f"journal:{tmp_path / 'study.journal'}"],
                    timeout=300, MLFLOW_TRACKING_URI=store)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and len(trials) == 2, "one study run and one run per trial, not one per process"
    assert all(r.info.status == "FINISHED" for r in runs)
