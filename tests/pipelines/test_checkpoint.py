"""The loop's checkpoints: an interrupted run resumed from its newest checkpoint computes and logs
what the uninterrupted run did, one value per step; bad checkpoints refuse with their path."""
import os
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from pipelines.cell_resume import cell_checkpoint_dir, start_cell_run
from pipelines.checkpoint import Checkpointer, Journal
from pipelines.config import TrainSettings, load_spec
from pipelines.errors import PlatformError
from pipelines.methods import FullMethod, LoraMethod, PrefixMethod, PromptMethod
from pipelines.sources.models import load_lm
from pipelines.tasks.summarization import collate, summary_loss
from pipelines.train import train
from tests.pipelines.test_train import encoded

FINGERPRINT = {"train.batch_size": 2, "method.name": "lora"}


class Killed(Exception):
    """Stands for the process dying at a step; the real SIGKILL is tests/recipes/test_kill_and_resume.py."""


def run(model_dir, method, directory, kill_at=None, fingerprint=FINGERPRINT, steps=9):
    torch.manual_seed(0)
    model, tokenizer, _ = load_lm(str(model_dir))
    model = method.apply(model)
    logged = []

    def log_metrics(metrics, step, timestamp):
        logged.append((step, metrics["train_loss"]))

    journal = Journal(log_metrics, lambda data, name: None, deferred=directory is not None)

    def log(metrics, step):
        if step == kill_at:
            raise Killed
        journal.metrics(metrics, step)

    checkpoints = Checkpointer(directory, 0.0, fingerprint, journal) if directory else None
    settings = TrainSettings(max_steps=steps, batch_size=2, grad_accum=2, log_every=1, warmup_ratio=0.2)
    try:
        train(model, encoded(tokenizer), settings, collate=collate, loss=summary_loss, learning_rate=method.learning_rate,
              weight_decay=0.01, seed=3, pad_id=tokenizer.pad_token_id, device=torch.device("cpu"), log=log,
              checkpoints=checkpoints)
    except Killed:
        return logged, None
    journal.flush()
    return logged, model


@pytest.mark.parametrize("method", [FullMethod(learning_rate=1e-3), LoraMethod(r=4, alpha=8, dropout=0.1),
                                    PrefixMethod(num_virtual_tokens=4), PromptMethod(num_virtual_tokens=4)],
                         ids=["full", "lora-with-dropout", "prefix", "prompt"])
def test_a_run_resumed_after_a_kill_logs_the_uninterrupted_losses_once_per_step(tiny_lm_dir, tmp_path, method):
    reference, ref_model = run(tiny_lm_dir, method, None)
    before, _ = run(tiny_lm_dir, method, tmp_path / "ckpt", kill_at=6)
    assert [s for s, _ in before] == [1, 2, 3, 4, 5]  # each step checkpointed, then logged
    after, model = run(tiny_lm_dir, method, tmp_path / "ckpt")
    resumed = before + after
    assert [s for s, _ in resumed] == list(range(1, 10))
    torch.testing.assert_close(torch.tensor([v for _, v in resumed]), torch.tensor([v for _, v in reference]),
                               rtol=0, atol=1e-6)
    for (name, a), (_, b) in zip(model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert len(list((tmp_path / "ckpt").glob("step-*.pt"))) == 2  # only the newest two are kept


def test_resuming_under_another_config_names_the_differing_field(tiny_lm_dir, tmp_path):
    run(tiny_lm_dir, FullMethod(learning_rate=1e-3), tmp_path / "c", kill_at=3)
    with pytest.raises(PlatformError, match=r"train.batch_size was 2, is now 4"):
        run(tiny_lm_dir, FullMethod(learning_rate=1e-3), tmp_path / "c", fingerprint={**FINGERPRINT, "train.batch_size": 4})


def test_a_truncated_checkpoint_refuses_with_its_path_and_a_half_written_one_is_ignored(tiny_lm_dir, tmp_path):
    directory = tmp_path / "c"
    run(tiny_lm_dir, FullMethod(learning_rate=1e-3), directory, kill_at=4)
    newest = sorted(directory.glob("step-*.pt"))[-1]
    (directory / ".step-00000004.pt.tmp").write_bytes(newest.read_bytes()[:100])  # killed while saving step 4
    journal = Journal(lambda m, s, t: None, lambda d, n: None, deferred=True)
    assert Checkpointer(directory, 0.0, FINGERPRINT, journal).latest()["step"] == 3
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.raises(PlatformError, match=rf"checkpoint {newest} is corrupt or truncated"):
        Checkpointer(directory, 0.0, FINGERPRINT, journal).latest()


def test_a_full_disk_fails_the_save_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    journal = Journal(lambda m, s, t: None, lambda d, n: None, deferred=True)
    checkpoints = Checkpointer(tmp_path, 0.0, FINGERPRINT, journal)
    checkpoints.save(1, {"step": 1})

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(PlatformError, match="cannot write checkpoint .*step-00000002.pt: No space left on device"):
        checkpoints.save(2, {"step": 2})
    assert [p.name for p in checkpoints.files()] == ["step-00000001.pt"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_run_killed_after_training_ended_trains_nothing_again(tiny_lm_dir, tmp_path):
    """Killed while the cell evaluates: the checkpoint written as training ended holds its last
    steps, so the resumed run logs no step twice and has the trained weights."""
    method = LoraMethod(r=4, alpha=8)
    logged, trained = run(tiny_lm_dir, method, tmp_path / "ckpt")
    assert [s for s, _ in logged] == list(range(1, 10))
    again, model = run(tiny_lm_dir, method, tmp_path / "ckpt")
    assert again == []
    for (name, a), (_, b) in zip(model.named_parameters(), trained.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_metrics_sent_again_after_a_kill_before_their_marker_are_kept_once(tracking, tmp_path):
    journal = Journal(lambda m, s, t: mlflow.log_metrics(m, step=s, timestamp=t), lambda d, n: None, deferred=True)
    checkpoints = Checkpointer(tmp_path, 0.0, FINGERPRINT, journal)
    with mlflow.start_run() as active:
        journal.metrics({"train_loss": 2.5}, 1)
        checkpoints.save(1, {"step": 1})
        (tmp_path / "step-00000001.logged").unlink()  # killed after the metrics were sent, before the marker
        Checkpointer(tmp_path, 0.0, FINGERPRINT, journal).latest()  # the resumed run sends them again
    history = MlflowClient().get_metric_history(active.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.5)]


def test_the_run_json_names_the_run_before_the_first_checkpoint_and_a_torn_one_is_not_fatal(tmp_path, capsys):
    journal = Journal(lambda m, s, t: None, lambda d, n: None, deferred=True)
    Checkpointer(tmp_path, 0.0, FINGERPRINT, journal).claim("run-a")
    assert Checkpointer(tmp_path, 0.0, FINGERPRINT, journal).saved_run_id() == "run-a"  # killed at step 0
    assert Checkpointer(tmp_path, 0.0, {**FINGERPRINT, "train.batch_size": 4}, journal).saved_run_id() is None
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "run.json").write_text("")  # as a kill during the earlier, non-atomic write left it
    assert Checkpointer(tmp_path, 0.0, FINGERPRINT, journal).saved_run_id() is None
    assert f"{tmp_path / 'run.json'} is unreadable" in capsys.readouterr().out


@pytest.mark.parametrize("status, continued", [("RUNNING", True), ("FAILED", False), ("FINISHED", False)])
def test_a_cell_continues_the_run_a_kill_left_running_and_not_one_that_ended(tracking, tmp_path, status, continued):
    journal = Journal(lambda m, s, t: None, lambda d, n: None, deferred=True)
    checkpoints = Checkpointer(tmp_path / "ckpt", 0.0, FINGERPRINT, journal)
    with mlflow.start_run():
        first = start_cell_run("cell", checkpoints).info.run_id
        mlflow.end_run(status)
        if status == "RUNNING":
            MlflowClient().update_run(first, "RUNNING")
        second = start_cell_run("cell", checkpoints).info.run_id
        mlflow.end_run()
    assert (second == first) is continued
    assert Checkpointer(tmp_path / "ckpt", 0.0, FINGERPRINT, journal).saved_run_id() == second


def test_a_second_job_on_a_cell_being_trained_refuses_naming_the_first(tmp_path):
    journal = Journal(lambda m, s, t: None, lambda d, n: None, deferred=True)
    first = Checkpointer(tmp_path / "ckpt", 0.0, FINGERPRINT, journal)
    first.hold()
    with pytest.raises(PlatformError, match=rf"ckpt is in use: process {os.getpid()} is training this cell"):
        Checkpointer(tmp_path / "ckpt", 0.0, FINGERPRINT, journal).hold()
    first.release()
    Checkpointer(tmp_path / "ckpt", 0.0, FINGERPRINT, journal).hold()  # free once the first let go


def test_jobs_logging_to_different_tracking_stores_keep_their_checkpoints_apart(tmp_path):
    spec = load_spec(Path(__file__).parents[2] / "experiments" / "dialogsum_demo.yaml")
    folders, previous = set(), mlflow.get_tracking_uri()
    try:
        for store in ("one", "two"):
            mlflow.set_tracking_uri(f"sqlite:///{tmp_path / store / 'mlflow.db'}")
            folders.add(cell_checkpoint_dir(spec, "smollm2-135m/lora/dialogsum_demo"))
    finally:
        mlflow.set_tracking_uri(previous)
    assert len(folders) == 2
    assert all(f.name == "smollm2-135m__lora__dialogsum_demo" and f.parent.name.startswith("store-") for f in folders)
