"""peft_compare end to end on a tiny random model: child runs, report, registry, failures."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from pipelines import compare
from tests.conftest import DIALOGUES, write_jsonl


def write_spec(tmp_path, model_dir, files, methods=None, **overrides) -> str:
    spec = {
        "name": "tiny_compare",
        "models": [{"name": "tiny", "source": str(model_dir)}],
        "datasets": [{"name": "dlg", "train": str(files["train"]), "eval": str(files["eval"])}],
        "methods": methods or [{"name": "base"}, {"name": "full", "learning_rate": 1e-3},
                               {"name": "lora", "learning_rate": 1e-2, "r": 2}],
        "train": {"max_steps": 2, "batch_size": 4, "log_every": 1, "max_seq_len": 128},
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "registry": {"model_name": "tiny-summarizer", "metric": "rougeL"},
    }
    spec.update(overrides)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def runs_of(client):
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_grid_logs_one_child_per_cell_a_report_and_a_champion(tracking, tmp_path, tiny_lm_dir, dialogue_files, capsys,
                                                             monkeypatch):
    from pipelines import cell, efficiency

    whole_run_mfu = []  # the cell's figure goes through efficiency.mfu, like every other MFU
    monkeypatch.setattr(cell, "mfu", lambda *args: whole_run_mfu.append(efficiency.mfu(*args)) or whole_run_mfu[-1])
    train = {"max_steps": 2, "batch_size": 4, "log_every": 1, "max_seq_len": 128, "eval_every_steps": 1, "eval_subset": 2}
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files, train=train)
    assert compare.main([spec]) == 0
    printed = capsys.readouterr().out
    assert "| tiny    | dlg       | lora" in printed and "@champion" in printed

    client = MlflowClient()
    runs = runs_of(client)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = {r.data.tags["method"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert parent.info.status == "FINISHED" and set(children) == {"base", "full", "lora"}
    assert parent.data.params["methods.2.r"] == "2"
    for method, run in children.items():
        assert run.info.status == "FINISHED"
        assert run.data.params["method.name"] == method and run.data.params["train.batch_size"] == "4"
        for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "precision_4", "eval_loss", "wall_time_s",
                    "peak_rss_mb", "params_trainable", "params_total", "saved_bytes"):
            assert key in run.data.metrics, (method, key)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "predictions.json" in artifacts
    trained = {m: children[m].data.metrics for m in ("full", "lora")}
    assert all(0 <= trained[m]["padding_share"] < 1 for m in trained)
    assert children["base"].data.metrics["saved_bytes"] == 0
    assert children["base"].data.metrics["params_trainable"] == 0  # zero-shot: nothing trains
    assert children["base"].data.metrics["params_total"] == trained["full"]["params_trainable"]
    assert 0 < trained["lora"]["saved_bytes"] < trained["full"]["saved_bytes"]
    assert trained["lora"]["params_trainable"] < trained["full"]["params_trainable"]
    assert [m.step for m in client.get_metric_history(children["lora"].info.run_id, "train_loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(children["lora"].info.run_id, "val_rougeL")] == [1, 2]
    assert trained["lora"]["best_step"] in (1, 2)
    assert "train_tokens_per_s" in trained["lora"] and 0 < trained["lora"]["mfu"] < 1
    mfu_history = client.get_metric_history(children["full"].info.run_id, "mfu")
    assert [m.step for m in mfu_history] == [1, 2, 2]  # two log windows, then the whole-run figure
    assert children["full"].data.metrics["mfu"] == mfu_history[-1].value
    assert whole_run_mfu == [trained["full"]["mfu"], trained["lora"]["mfu"]]
    _assert_logged_models_rank_the_cells(parent, children)

    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert report == {"report/comparison.csv", "report/comparison.md", "report/comparison.json",
                      "report/quality_vs_cost.png"}
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "report/comparison.csv"))
    assert list(table["method"]) == ["base", "full", "lora"] and set(table["status"]) == {"FINISHED"}
    shown = mlflow.load_table("report/comparison.json", run_ids=[parent.info.run_id])  # a table in the UI
    assert list(shown["method"]) == ["base", "full", "lora"]
    for metric, pick in (("rougeL", max), ("eval_loss", min)):  # each in its own direction
        value = pick(r.data.metrics[metric] for r in children.values())
        holders = {f"tiny/{m}/dlg" for m, r in children.items() if r.data.metrics[metric] == value}  # ties on tiny
        assert parent.data.metrics[f"best_{metric}"] == value
        assert parent.data.tags[f"best_{metric}.cell"] in holders

    version = client.get_model_version_by_alias("tiny-summarizer", "champion")
    best_value = max(r.data.metrics["rougeL"] for r in children.values())
    promoted = next(r for r in children.values() if r.info.run_id == version.run_id)
    assert promoted.data.metrics["rougeL"] == best_value
    assert version.tags["source_run_id"] == version.run_id
    assert version.tags["metric.rougeL"] == str(best_value)
    served = mlflow.pyfunc.load_model("models:/tiny-summarizer@champion")
    out = served.predict(pd.DataFrame({"dialogue": [DIALOGUES[0][0], DIALOGUES[1][0]]}))
    assert list(out.columns) == ["summary"] and len(out) == 2


def _assert_logged_models_rank_the_cells(parent, children):
    """Each cell's model is a LoggedModel holding its step and scores: MLflow's search of logged
    models ranks the cells without reading their runs."""
    models = mlflow.search_logged_models(experiment_ids=[parent.info.experiment_id], output_format="list",
                                         order_by=[{"field_name": "metrics.eval_loss", "ascending": True}])
    by_run = {r.info.run_id: r for r in children.values()}
    assert sorted(m.source_run_id for m in models) == sorted(by_run)  # one per cell, none for checkpoints
    ranked = []
    for model in models:
        run = by_run[model.source_run_id]
        latest = {m.key: m for m in sorted(model.metrics, key=lambda m: m.timestamp)}
        step = run.data.metrics.get("best_step", run.data.metrics.get("train_steps", 0))
        assert model.params["step"] == str(int(step)) and model.params["method.name"] == run.data.tags["method"]
        assert latest["eval_loss"].value == run.data.metrics["eval_loss"]
        assert latest["rougeL"].value == run.data.metrics["rougeL"]
        if "best_step" in run.data.metrics:  # the validation that selected the step, linked by MLflow at that step
            assert (latest["val_rougeL"].step, latest["val_rougeL"].value) == (step, run.data.metrics["best_val_score"])
        ranked.append(latest["eval_loss"].value)
    assert ranked == sorted(ranked) and len(set(ranked)) == 3
    assert {m.params["step"] for m in models} != {"0"}  # the trained cells' models are not all of step 0


@pytest.mark.parametrize("method", [{"name": "lora", "r": 2}, {"name": "qlora", "r": 2},
                                    {"name": "prompt", "num_virtual_tokens": 4}], ids=lambda m: m["name"])
def test_peft_models_store_the_adapter_not_the_base_weights_and_serve(method, tracking, tmp_path, tiny_lm_dir,
                                                                      dialogue_files):
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files, methods=[method])
    assert compare.main([spec]) == 0
    client = MlflowClient()
    version = client.get_model_version_by_alias("tiny-summarizer", "champion")
    local = mlflow.artifacts.download_artifacts(version.source)
    files = {p.name for p in Path(local).rglob("*") if p.is_file()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    served = mlflow.pyfunc.load_model("models:/tiny-summarizer@champion")
    assert len(served.predict(pd.DataFrame({"dialogue": [DIALOGUES[2][0]]}))) == 1


def test_a_second_equal_run_registers_a_challenger_and_keeps_the_champion(tracking, tmp_path, tiny_lm_dir, dialogue_files):
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files, methods=[{"name": "base"}])
    assert compare.main([spec]) == 0
    assert compare.main([spec]) == 0  # same seed, same model: equal metric, so no win
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("tiny-summarizer", "champion").version) == "1"
    challenger = client.get_model_version_by_alias("tiny-summarizer", "challenger")
    assert str(challenger.version) == "2" and "does not beat champion v1" in challenger.description


def test_the_reading_takes_the_registry_metric_in_its_direction(tracking, tmp_path, tiny_lm_dir, dialogue_files):
    registry = {"model_name": "tiny-summarizer", "metric": "eval_loss", "greater_is_better": False, "promote": False}
    methods = [{"name": "base"}, {"name": "full", "learning_rate": 1e-3}]
    assert compare.main([write_spec(tmp_path, tiny_lm_dir, dialogue_files, methods=methods, registry=registry)]) == 0
    runs = runs_of(MlflowClient())
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    lowest = min((r for r in runs if r is not parent), key=lambda r: r.data.metrics["eval_loss"])
    assert lowest.data.tags["method"] == "full"  # two steps at lr 1e-3 fit the eval dialogues better
    assert "full scores the best eval loss" in parent.data.tags["mlflow.note.content"]


def test_a_failing_cell_is_reported_and_the_others_go_on(tracking, tmp_path, tiny_lm_dir, dialogue_files, capsys):
    methods = [{"name": "base"}, {"name": "lora", "target_modules": ["no_such_layer"]}]
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files, methods=methods)
    assert compare.main([spec]) == 1
    err = capsys.readouterr().err
    assert "1 cell(s) failed: tiny/lora/dlg: lora cannot apply" in err
    client = MlflowClient()
    children = {r.data.tags["method"]: r for r in runs_of(client) if "mlflow.parentRunId" in r.data.tags}
    assert children["lora"].info.status == "FAILED" and "no_such_layer" in children["lora"].data.tags["error"]
    assert children["base"].info.status == "FINISHED"
    versions = client.search_model_versions("name='tiny-summarizer'")
    assert [v.run_id for v in versions] == [children["base"].info.run_id]


def _bad_row_file(tmp_path, row):
    rows = [{"dialogue": d, "summary": s} for d, s in DIALOGUES[:3]] + [row]
    return write_jsonl(tmp_path / "bad.jsonl", rows)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_dataset", "dataset file not found: "),
        ("row_without_target", "bad.jsonl row 4: field 'summary' is missing"),
        ("empty_dialogue", "bad.jsonl row 4: field 'dialogue' is empty"),
        ("unknown_method", "methods.0: Input tag 'prefix-magic' found using 'name'"),
        ("unknown_package", "unknown packaged model 'package:no-such-model'"),
        ("offline_hub_id", "model 'someone/some-model' is neither a local folder nor a packaged model"),
    ],
)
def test_bad_input_fails_fast_with_one_line_and_a_failed_run(case, expected, tracking, tmp_path, tiny_lm_dir,
                                                             dialogue_files, capsys):
    files, methods, models = dict(dialogue_files), [{"name": "base"}], None
    if case == "missing_dataset":
        files["train"] = tmp_path / "nowhere.jsonl"
    elif case == "row_without_target":
        files["train"] = _bad_row_file(tmp_path, {"dialogue": "A: hi\nB: hello"})
    elif case == "empty_dialogue":
        files["train"] = _bad_row_file(tmp_path, {"dialogue": "  ", "summary": "nothing"})
    elif case == "unknown_method":
        methods = [{"name": "prefix-magic"}]
    elif case == "unknown_package":
        models = [{"name": "x", "source": "package:no-such-model"}]
    elif case == "offline_hub_id":
        models = [{"name": "x", "source": "someone/some-model"}]
    spec = write_spec(tmp_path, tiny_lm_dir, files, methods=methods, **({"models": models} if models else {}))
    with pytest.raises(SystemExit) as exit_info:
        compare.main([spec])
    assert exit_info.value.code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err_lines) == 1 and expected in err_lines[0]
    client = MlflowClient()
    runs = runs_of(client)
    assert len(runs) == 1 and runs[0].info.status == "FAILED" and expected in runs[0].data.tags["error"]
    assert client.search_registered_models() == []


def test_seq2seq_models_run_the_same_grid_and_serve(tracking, tmp_path, tiny_seq2seq_dir, dialogue_files):
    spec = write_spec(tmp_path, tiny_seq2seq_dir, dialogue_files, methods=[{"name": "full"}, {"name": "lora", "r": 2}])
    assert compare.main([spec]) == 0
    served = mlflow.pyfunc.load_model("models:/tiny-summarizer@champion")
    out = served.predict(pd.DataFrame({"dialogue": [DIALOGUES[3][0]]}))
    assert len(out) == 1 and isinstance(out["summary"][0], str)


def test_seeds_run_each_cell_once_per_seed_and_the_parent_reports_mean_and_std(tracking, tmp_path, tiny_lm_dir,
                                                                               dialogue_files):
    import statistics

    registry = {"model_name": "tiny-summarizer", "metric": "eval_loss", "greater_is_better": False}
    methods = [{"name": "base"}, {"name": "full", "learning_rate": 1e-3}]
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files, methods=methods, registry=registry, seeds=[1, 2, 3])
    assert compare.main([spec]) == 0
    client = MlflowClient()
    runs = runs_of(client)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r is not parent]
    assert sorted((r.data.tags["method"], r.data.tags["seed"]) for r in children) == [
        (m, s) for m in ("base", "full") for s in ("1", "2", "3")]
    assert {r.info.run_name for r in children} >= {"tiny/full/dlg seed 1", "tiny/base/dlg seed 3"}
    full = [r for r in children if r.data.tags["method"] == "full"]
    losses = [r.data.metrics["eval_loss"] for r in full]
    assert len(set(losses)) == 3  # the seed changes training, not only the run's name
    assert parent.data.metrics["best_eval_loss"] == pytest.approx(statistics.fmean(losses))
    assert parent.data.metrics["best_eval_loss_std"] == pytest.approx(statistics.stdev(losses))
    assert "Over 3 seeds on dlg, tiny/full has the best mean eval loss" in parent.data.tags["mlflow.note.content"]
    table = client.load_table(parent.info.experiment_id, "report/comparison.json", run_ids=[parent.info.run_id])
    assert set(table["seeds"]) == {3} and "eval_loss_std" in table
    # the registered model is the best run of the cell with the best mean
    version = client.get_model_version_by_alias("tiny-summarizer", "champion")
    assert version.run_id == min(full, key=lambda r: r.data.metrics["eval_loss"]).info.run_id


def test_listing_the_spec_seed_under_seeds_keeps_the_cells_of_a_grid_without_seeds(tiny_lm_dir, dialogue_files,
                                                                                  tmp_path):
    from pipelines.cell import cell_params
    from pipelines.config import load_spec

    plain = load_spec(write_spec(tmp_path, tiny_lm_dir, dialogue_files))
    seeded = plain.model_copy(update={"seeds": [plain.seed, 7]})
    cell = (plain.models[0], plain.datasets[0], plain.methods[1])
    assert cell_params(seeded, *cell) == cell_params(plain, *cell)  # a resumed grid reuses the seed it ran
