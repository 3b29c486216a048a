"""Exact resume with a real kill: a from-scratch GPT grid is SIGKILLed at a random step, run again,
and must end with the per-step losses of an uninterrupted run (to 1e-6 on CPU), one value per
step, in the same MLflow run."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import every_experiment
from tests.pipelines.tasks.test_language_modeling import TEXT

STEPS = 30
ROOT = Path(__file__).resolve().parents[2]


def scratch_spec(tmp_path: Path, name: str) -> Path:
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 2)
    spec = {
        "name": name, "task": "language_modeling", "seed": 7,
        "models": [{"name": "gpt", "source": "scratch", "scratch": {
            "layers": 2, "heads": 2, "width": 32, "context_length": 32, "dropout": 0.1,
            "tokenizer": {"kind": "char", "vocab_size": 80}}}],
        "datasets": [{"name": "book", "train": {"local": str(book)}}],
        "methods": [{"name": "full", "learning_rate": 3e-3, "weight_decay": 0.1}],
        "train": {"max_steps": STEPS, "batch_size": 4, "max_seq_len": 32, "log_every": 1, "warmup_ratio": 0.1,
                  "label_smoothing": 0.1, "checkpoint_every_minutes": 1e-6, "checkpoint_dir": str(tmp_path / "ckpt")},
        "language_modeling": {"windows": 2, "prompt_tokens": 8, "continuation_tokens": 8, "sample_prompts": []},
        "registry": {"promote": False},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start(spec: Path, uri: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipelines.compare", str(spec)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def losses(client: MlflowClient, run_id: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train_loss"))


def cell_runs(client: MlflowClient) -> list:
    return [r for r in client.search_runs(every_experiment()) if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow
def test_a_scratch_gpt_killed_at_a_random_step_resumes_to_the_uninterrupted_losses(tmp_path, tracking):
    client = MlflowClient()
    reference = tmp_path / "reference"
    reference.mkdir()
    assert start(scratch_spec(reference, "uninterrupted"), tracking).wait(timeout=900) == 0
    expected = losses(client, cell_runs(client)[0].info.run_id)
    assert [s for s, _ in expected] == list(range(1, STEPS + 1))

    killed = tmp_path / "killed"
    killed.mkdir()
    spec = scratch_spec(killed, "killed")
    kill_at = random.Random().randint(3, STEPS - 5)
    process = start(spec, tracking)
    for line in process.stdout:  # the loop prints "  step N/30 ..." once per step
        if line.strip().startswith(f"step {kill_at}/"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"the run ended before step {kill_at}"
    assert list((killed / "ckpt").rglob("step-*.pt")), "no checkpoint was written before the kill"

    resumed = start(spec, tracking)
    output = resumed.communicate(timeout=900)[0]
    assert resumed.returncode == 0, output
    assert "continuing run" in output and "resumed at step" in output
    runs = [r for r in cell_runs(client) if r.data.tags.get("mlflow.runName") == "gpt/full/book"]
    killed_runs = [r for r in runs if r.data.params.get("name") == "killed"]
    assert len(killed_runs) == 1, "the resumed cell must continue the killed run, not open another"
    run = killed_runs[0]
    assert run.info.status == "FINISHED"
    got = losses(client, run.info.run_id)
    assert [s for s, _ in got] == list(range(1, STEPS + 1)), "one value per step, none twice, none lost"
    for (step, value), (_, want) in zip(got, expected):
        assert abs(value - want) <= 1e-6, (step, value, want)
    assert not (killed / "ckpt").exists() or not list((killed / "ckpt").rglob("step-*.pt"))
    # The resume checkpoints are files of the training loop, never models: the run logged one, its last step's.
    models = [m for m in client.search_logged_models(every_experiment()) if m.source_run_id == run.info.run_id]
    assert [m.params["step"] for m in models] == [str(STEPS)]


# Prefix and prompt tuning were once left out here after a grid resumed in the prefix cell exited 1.
# The method was not the cause: each checkpoint rewrote run.json in place, a kill between its
# truncation and its write left it empty (1 kill in 20 at a prefix cell's step 3, measured), and the
# next run's json.loads failed the whole grid. run.json is now written once, atomically, as the
# cell's run starts (tests/pipelines/test_checkpoint.py has that and the other kill windows).
EVERY_METHOD = [{"name": "full", "learning_rate": 1e-3}, {"name": "lora", "r": 2, "dropout": 0.1},
                {"name": "dora", "r": 2}, {"name": "qlora", "r": 2}, {"name": "ia3"},
                {"name": "prefix", "num_virtual_tokens": 4}, {"name": "prompt", "num_virtual_tokens": 4}]
METHOD_STEPS = 10


def grid_spec(tmp_path: Path, name: str, base: dict) -> Path:
    spec = {**base, "name": name}
    spec["train"] = {**base["train"], "max_steps": METHOD_STEPS, "log_every": 1, "checkpoint_every_minutes": 1e-6,
                     "checkpoint_dir": str(tmp_path / f"ckpt-{name}")}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def kill_in_every_cell(spec: Path, uri: str, labels: list[str]) -> None:
    """Run the grid, SIGKILL it at a random step of cell 1, run it again (it resumes cell 1), kill
    it in cell 2, ... and finally let it finish."""
    rng = random.Random()
    for position, label in enumerate(labels, start=1):
        kill_at, in_cell = rng.randint(2, METHOD_STEPS - 2), False
        process, seen = start(spec, uri), []
        for line in process.stdout:
            seen.append(line)
            in_cell = in_cell or line.startswith(f"[{position}/{len(labels)}] {label}")
            if in_cell and line.strip().startswith(f"step {kill_at}/"):
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=600)
        assert process.returncode == -signal.SIGKILL, f"{label} ended before step {kill_at}:\n" + "".join(seen[-25:])
    finished = start(spec, uri)
    output = finished.communicate(timeout=900)[0]
    assert finished.returncode == 0, output


def per_method_losses(client: MlflowClient, grid_name: str) -> dict[str, list[tuple[int, float]]]:
    runs = [r for r in cell_runs(client) if r.data.params.get("name") == grid_name]
    methods = [r.data.tags["method"] for r in runs]
    assert len(methods) == len(set(methods)), f"a killed cell opened a second run: {sorted(methods)}"
    assert all(r.info.status == "FINISHED" for r in runs)
    return {r.data.tags["method"]: losses(client, r.info.run_id) for r in runs}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["summarization", "classification"])
def test_every_method_killed_at_a_random_step_resumes_to_the_uninterrupted_losses(
        task, tmp_path, tracking, tiny_lm_dir, tiny_encoder_dir, dialogue_files, sentiment_files):
    if task == "summarization":
        methods, model, files = EVERY_METHOD, tiny_lm_dir, dialogue_files
        base = {"task": "summarization", "datasets": [{"name": "dlg", "train": str(files["train"]),
                                                       "eval": str(files["eval"])}],
                "train": {"batch_size": 2, "max_seq_len": 96, "warmup_ratio": 0.2},
                "generation": {"max_new_tokens": 2, "batch_size": 4}, "eval": {"max_examples": 2}}
    else:  # the classifier's head trains too, and is in its checkpoints
        methods, model, files = EVERY_METHOD[:2], tiny_encoder_dir, sentiment_files
        base = {"task": "classification", "datasets": [{"name": "sent", "train": str(files["train"]),
                                                        "eval": str(files["eval"]), "text_field": "text",
                                                        "target_field": "label"}],
                "train": {"batch_size": 8, "max_seq_len": 32}, "eval": {"max_examples": 8}}
    base.update(seed=5, models=[{"name": "tiny", "source": str(model)}], methods=methods,
                registry={"promote": False})
    client = MlflowClient()
    assert start(grid_spec(tmp_path, "straight", base), tracking).wait(timeout=1200) == 0
    expected = per_method_losses(client, "straight")
    dataset = base["datasets"][0]["name"]
    kill_in_every_cell(grid_spec(tmp_path, "killed", base), tracking, [f"tiny/{m['name']}/{dataset}" for m in methods])
    got = per_method_losses(client, "killed")
    assert set(got) == set(expected) == {m["name"] for m in methods}
    for method, history in got.items():
        assert [s for s, _ in history] == list(range(1, METHOD_STEPS + 1)), method
        worst = max(abs(a - b) for (_, a), (_, b) in zip(history, expected[method]))
        assert worst <= 1e-6, f"{method}: resumed losses differ from the uninterrupted run by {worst:.2e}"
