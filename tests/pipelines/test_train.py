import pytest
import torch

from pipelines.config import TrainSettings
from pipelines.methods import FullMethod, LoraMethod
from pipelines.sources.models import load_lm
from pipelines.tasks.summarization import collate, encode_for_training, summary_loss, target_tokens
from pipelines.train import eval_loss, lr_at, plan_steps, train
from tests.conftest import DIALOGUES

INSTRUCTION = "Summarize the following dialogue in one or two sentences."


def encoded(tokenizer):
    return [encode_for_training(tokenizer, INSTRUCTION, d, s, 256, 32) for d, s in DIALOGUES]


def fit(model_dir, method, settings, seed=0):
    model, tokenizer, _ = load_lm(str(model_dir))
    torch.manual_seed(seed)
    model = method.apply(model)
    data = encoded(tokenizer)
    logged = []
    result = train(model, data, settings, collate=collate, loss=summary_loss, learning_rate=method.learning_rate, weight_decay=0.0, seed=seed,
                   pad_id=tokenizer.pad_token_id, device=torch.device("cpu"),
                   log=lambda metrics, step: logged.append((step, metrics["train_loss"])))
    return model, tokenizer, data, result, logged


def test_lr_warms_up_then_decays_to_a_tenth():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(55, 100, 1.0, 10) == pytest.approx(0.55)


def test_plan_steps_from_epochs_or_max_steps():
    assert plan_steps(20, TrainSettings(epochs=2, batch_size=8)) == (6, "epochs")  # ceil(20/8)=3 per epoch
    assert plan_steps(20, TrainSettings(epochs=2, batch_size=8, max_steps=4)) == (4, "steps")
    assert plan_steps(20, TrainSettings(epochs=2, batch_size=8, grad_accum=2)) == (3, "epochs")
    assert plan_steps(20, TrainSettings(max_steps=50, batch_size=8)) == (50, "steps")
    assert plan_steps(20, TrainSettings(batch_size=8)) == (3, "epochs")


def test_full_fine_tuning_fits_the_training_set(tiny_lm_dir):
    settings = TrainSettings(max_steps=40, batch_size=4, log_every=10, warmup_ratio=0.0)
    model, tokenizer, data, result, logged = fit(tiny_lm_dir, FullMethod(learning_rate=3e-3), settings)
    assert result.steps == 40 and result.stopped_by == "steps"
    assert result.tokens == sum(len(data[i].input_ids) for i in range(len(data))) * 20  # 40 steps x 4 = 20 epochs
    assert [step for step, _ in logged] == [10, 20, 30, 40]
    assert logged[-1][1] < 0.8 * logged[0][1]
    untrained, _, _ = load_lm(str(tiny_lm_dir))
    pad = tokenizer.pad_token_id
    assert eval_loss(model, data, collate=collate, loss=summary_loss, weight=target_tokens, batch_size=4, pad_id=pad, device=torch.device("cpu")) < 0.8 * eval_loss(untrained, data, collate=collate, loss=summary_loss, weight=target_tokens, batch_size=4, pad_id=pad, device=torch.device("cpu"))


def test_training_is_exactly_reproducible(tiny_lm_dir):
    settings = TrainSettings(max_steps=6, batch_size=4, log_every=1)
    *_, first = fit(tiny_lm_dir, LoraMethod(r=2, learning_rate=1e-2), settings, seed=5)
    *_, second = fit(tiny_lm_dir, LoraMethod(r=2, learning_rate=1e-2), settings, seed=5)
    assert [loss for _, loss in first] == [loss for _, loss in second]
    assert len(first) == 6


def test_wall_clock_budget_stops_training(tiny_lm_dir):
    settings = TrainSettings(max_steps=1000, batch_size=4, max_minutes=1e-6)
    *_, result, logged = fit(tiny_lm_dir, FullMethod(), settings)
    assert result.stopped_by == "time" and result.steps == 1 and len(logged) == 1


def test_validation_logs_step_metrics_stops_early_and_keeps_the_best_weights(tiny_lm_dir):
    model, tokenizer, _ = load_lm(str(tiny_lm_dir))
    method = FullMethod(learning_rate=1e-2)
    model = method.apply(model)
    scripted = iter([0.10, 0.30, 0.20, 0.25, 0.90])  # best at the 2nd validation, then two without gain
    seen = {}

    def validate(m, at_step):
        step = len(seen) + 1
        seen[step * 2] = {n: p.detach().clone() for n, p in m.named_parameters()}
        return {"rougeL": next(scripted), "bleu": 1.0}

    logged = []
    settings = TrainSettings(max_steps=20, batch_size=4, log_every=100, eval_every_steps=2, early_stopping_patience=2)
    result = train(model, encoded(tokenizer), settings, collate=collate, loss=summary_loss, learning_rate=1e-2, weight_decay=0.0, seed=0,
                   pad_id=tokenizer.pad_token_id, device=torch.device("cpu"),
                   log=lambda metrics, step: logged.append((step, metrics)), validate=validate)
    assert result.stopped_by == "early_stopping" and result.steps == 8
    assert (result.best_step, result.best_value) == (4, 0.30)
    val_steps = [(step, m["val_rougeL"]) for step, m in logged if "val_rougeL" in m]
    assert val_steps == [(2, 0.10), (4, 0.30), (6, 0.20), (8, 0.25)]
    for name, param in model.named_parameters():  # the weights of step 4, not of step 8
        torch.testing.assert_close(param, seen[4][name], rtol=0, atol=0)


def test_on_validation_hears_every_validation_and_can_stop_training(tiny_lm_dir):
    model, tokenizer, _ = load_lm(str(tiny_lm_dir))
    model = FullMethod(learning_rate=1e-3).apply(model)
    heard = []

    class Stop(Exception):
        pass

    def on_validation(scores, step):
        heard.append((step, scores["rougeL"]))
        if step == 4:
            raise Stop

    settings = TrainSettings(max_steps=10, batch_size=4, log_every=100, eval_every_steps=2)
    scores = iter([0.1, 0.2, 0.3])
    with pytest.raises(Stop):
        train(model, encoded(tokenizer), settings, collate=collate, loss=summary_loss, learning_rate=1e-3, weight_decay=0.0, seed=0,
              pad_id=tokenizer.pad_token_id, device=torch.device("cpu"),
              validate=lambda m, step: {"rougeL": next(scores)}, on_validation=on_validation)
    assert heard == [(2, 0.1), (4, 0.2)]


def test_log_windows_report_mfu_through_the_one_formula(tiny_lm_dir, monkeypatch):
    from pipelines import efficiency
    from pipelines import train as train_module

    calls = []
    monkeypatch.setattr(train_module, "mfu", lambda *args: calls.append(args) or efficiency.mfu(*args))
    model, tokenizer, _ = load_lm(str(tiny_lm_dir))
    logged = []
    train(model, encoded(tokenizer), TrainSettings(max_steps=2, batch_size=4, log_every=1), collate=collate, loss=summary_loss, learning_rate=1e-3,
          weight_decay=0.0, seed=0, pad_id=tokenizer.pad_token_id, device=torch.device("cpu"),
          log=lambda metrics, step: logged.append(metrics), flops_per_token=1e6, peak_flops=1e12)
    assert [args[1:] for args in calls] == [(1e6, 1e12)] * 2
    assert [m["mfu"] for m in logged] == [efficiency.mfu(m["train_tokens_per_s"], 1e6, 1e12) for m in logged]


def test_padding_share_counts_the_padded_slots(tiny_lm_dir):
    from pipelines.batches import length_grouped_batches

    settings = TrainSettings(epochs=1, batch_size=3, log_every=1)
    *_, data, result, _ = fit(tiny_lm_dir, LoraMethod(r=2), settings, seed=3)
    lengths = [len(e.input_ids) for e in data]
    slots = sum(len(b) * max(lengths[i] for i in b) for b in length_grouped_batches(lengths, 3, seed=3))
    assert result.padding_share == pytest.approx(1 - sum(lengths) / slots)
    assert 0 < result.padding_share < 0.5
