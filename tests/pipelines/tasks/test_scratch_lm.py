"""A from-scratch GPT through the language-modelling task: its tokenizer trained and logged, the
three parts scored, samples for fixed prompts at every validation, the baselines in the report,
unknown words paid for, and the registered model served as a text generator."""
from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from pipelines import compare
from pipelines.errors import PlatformError
from pipelines.sources.scratch import ScratchModel, build_scratch_lm
from pipelines.tasks.lm_blocks import pack
from pipelines.tasks.lm_scoring import teacher_forced
from tests.conftest import every_experiment
from tests.pipelines.tasks.test_language_modeling import TEXT


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path / "cache"))


def scratch_spec(tmp_path, book, kind="char", vocab=80, **train) -> str:
    spec = {"name": "tiny_gpt", "task": "language_modeling", "seed": 1,
            "models": [{"name": "gpt", "source": "scratch", "scratch": {
                "layers": 1, "heads": 2, "width": 32, "context_length": 32, "tokenizer": {"kind": kind, "vocab_size": vocab}}}],
            "datasets": [{"name": "book", "train": str(book)}],
            "methods": [{"name": "base"}, {"name": "full", "learning_rate": 3e-3}],
            "train": {"max_steps": 4, "batch_size": 4, "max_seq_len": 32, "log_every": 1, "eval_every_steps": 2,
                      "eval_subset": 1, **train},
            "generation": {"batch_size": 4},
            "language_modeling": {"windows": 3, "prompt_tokens": 8, "continuation_tokens": 4, "sample_tokens": 5},
            "registry": {"model_name": "tiny-gpt"}}
    path = tmp_path / "gpt.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_a_scratch_gpt_grid_scores_every_part_logs_its_tokenizer_and_samples_and_serves(tracking, tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 3)
    assert compare.main([scratch_spec(tmp_path, book)]) == 0
    client = MlflowClient()
    runs = client.search_runs(every_experiment())
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    cells = {r.data.tags["method"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    full = cells["full"]
    for key in ("bits_per_char", "bits_per_byte", "perplexity", "token_accuracy", "train_perplexity",
                "validation_perplexity", "train_bits_per_char", "validation_bits_per_char", "bleu_4",
                "overfitting_ratio", "generalisation_gap", "generation_ms_per_token_std", "train_chars_per_s", "mfu",
                "unknown_token_share", "peak_rss_mb"):
        assert key in full.data.metrics, key
    assert full.data.metrics["bits_per_char"] < cells["base"].data.metrics["bits_per_char"]  # it learned something
    assert full.data.params["tokenizer.kind"] == "char" and len(full.data.params["tokenizer.cache_key"]) == 16
    assert "tokenizer/tokenizer.json" in {a.path for a in client.list_artifacts(full.info.run_id, "tokenizer")}
    samples = json.loads(Path(client.download_artifacts(full.info.run_id, "validation_samples.json",
                                                        str(tmp_path))).read_text())
    table = pd.DataFrame(samples["data"], columns=samples["columns"])
    assert sorted(set(table["step"])) == [2, 4] and set(table["prompt"]) == {"En un lugar de la Mancha",
                                                                          "En el año 1492,", "Durante la Edad Media,"}
    assert set(parent.data.metrics) >= {"reference.book.xz_-9.bits_per_char", "reference.book.char_bigram.bits_per_char"}
    report = Path(client.download_artifacts(parent.info.run_id, "report/comparison.md", str(tmp_path))).read_text()
    assert "| baseline | book      | xz -9" in report and "the best baseline" in report
    served = mlflow.pyfunc.load_model("models:/tiny-gpt@champion")
    out = served.predict(pd.DataFrame({"prompt": ["En un lugar"]}), params={"max_new_tokens": 4})
    assert isinstance(out["continuation"].iloc[0], str) and not out["truncated"].iloc[0]


def test_a_word_tokenizer_pays_for_its_unknown_words_in_bits_per_char():
    settings = ScratchModel(layers=1, heads=2, width=16, context_length=16, tokenizer={"kind": "word", "vocab_size": 12})
    model, tokenizer, trained = build_scratch_lm(settings, [TEXT], seed=0, device="cpu")
    free = pack(tokenizer, [TEXT[:2000]], 16, "test")
    charged = pack(tokenizer, [TEXT[:2000]], 16, "test", unknown_cost=trained.spelling.nats)
    assert sum(b.unknown_tokens for b in charged) > 0 and sum(b.unknown_nats for b in charged) > 0
    plain, paid = (teacher_forced(model, blocks, 8, tokenizer.pad_token_id) for blocks in (free, charged))
    assert paid["unknown_token_share"] > 0.3
    assert paid["perplexity"] == pytest.approx(plain["perplexity"])  # per token, as the model sees them
    extra = sum(b.unknown_nats for b in charged) / (math.log(2) * sum(b.scored_chars for b in charged))
    assert paid["bits_per_char"] == pytest.approx(plain["bits_per_char"] + extra)


def test_a_text_too_short_for_one_batch_names_the_file_and_the_sizes(tracking, tmp_path):
    book = tmp_path / "short.txt"
    book.write_text(TEXT[:3000])
    spec = scratch_spec(tmp_path, book, batch_size=256)
    with pytest.raises(PlatformError, match=rf"{book} \(first 90%\): [0-9]+ tokens make [0-9]+ block\(s\) of "
                                            r"train.max_seq_len=32, fewer than one batch of train.batch_size=256"):
        from pipelines.config import load_spec
        from pipelines.tasks import get_task

        task, loaded = get_task("language_modeling"), load_spec(spec)
        splits = task.load_splits(loaded.datasets[0], loaded)
        fitted = task.load(loaded.models[0], splits, loaded, "cpu", {})
        task.encode(fitted, loaded, splits.train)
