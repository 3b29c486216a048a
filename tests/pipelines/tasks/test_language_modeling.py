"""Language modelling: the split of a book, packing, bits per byte by hand, bad text files, and a
tiny grid that trains, scores and serves."""
from __future__ import annotations

import math

import pytest
import torch
import yaml
from mlflow import MlflowClient

from pipelines import compare
from pipelines.config import load_spec
from pipelines.errors import PlatformError
from pipelines.sources.datasets import read_rows
from pipelines.tasks import get_task
from pipelines.tasks.lm_blocks import pack, prompt_response, text_splits
from pipelines.tasks.lm_scoring import teacher_forced
from pipelines.tasks.summarization import IGNORE_INDEX
from tests.conftest import DIALOGUES, every_experiment, write_jsonl

TEXT = " ".join(d for pair in DIALOGUES for d in pair) * 6


def test_a_book_splits_contiguously_into_90_5_5():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    train, validation, test = text_splits(text)
    assert (len(train), len(validation), len(test)) == (900, 50, 50)
    assert train + validation + test == text


def test_packing_cuts_fixed_blocks_and_counts_the_bytes_it_scores(tiny_lm_plain_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_plain_dir)
    text = "Ñandú comió pan. " * 20
    blocks = pack(tokenizer, [text], 16, "book.txt")
    assert blocks and all(len(b.input_ids) == 16 and b.labels == b.input_ids for b in blocks)
    first = blocks[0]
    # The text from the end of the first token (predicted by nothing) to the end of the 16th: a
    # character split over two byte tokens counts once, not as two replacement characters.
    ends = [end for _, end in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    scored = text[ends[0] : ends[15]]
    assert (first.scored_bytes, first.scored_chars) == (len(scored.encode("utf-8")), len(scored))
    assert sum(b.scored_chars for b in blocks) <= len(text) - len(blocks)
    assert first.scored_bytes > first.scored_chars  # ñ, ú, ó take two bytes each
    with pytest.raises(PlatformError, match=r"^book.txt: [0-9]+ tokens make 0 block\(s\) of train.max_seq_len=4096, fewer than one block$"):
        pack(tokenizer, ["short"], 4096, "book.txt")


def test_a_response_row_scores_the_response_only(tiny_lm_plain_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_plain_dir)
    block = prompt_response(tokenizer, "Ana: hi", " Ana greets.", 64)
    head = len(tokenizer("Ana: hi", add_special_tokens=False)["input_ids"])
    assert block.labels[:head] == [IGNORE_INDEX] * head and block.labels[head:] == block.input_ids[head:]


class UniformLM(torch.nn.Module):
    """Equal logits everywhere: every scored token costs exactly ln(vocab) nats."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.weight = vocab, torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, **_):
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, self.vocab) + self.weight})()


def test_bits_per_byte_is_total_nats_over_ln2_times_the_scored_bytes(tiny_lm_plain_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_plain_dir)
    blocks = pack(tokenizer, [TEXT], 32, "t.txt")
    scores = teacher_forced(UniformLM(len(tokenizer)), blocks, 4, tokenizer.pad_token_id)
    tokens = 31 * len(blocks)
    nats = tokens * math.log(len(tokenizer))
    assert scores["scored_tokens"] == tokens
    assert scores["perplexity"] == pytest.approx(len(tokenizer), rel=1e-5)
    assert scores["bits_per_byte"] == pytest.approx(nats / (math.log(2) * sum(b.scored_bytes for b in blocks)), rel=1e-5)
    assert scores["bits_per_char"] == pytest.approx(nats / (math.log(2) * sum(b.scored_chars for b in blocks)), rel=1e-5)


@pytest.mark.parametrize("content, message", [
    (b"", "dataset file {path} is empty"),
    (b"caf\xe9 con leche", "{path}: not UTF-8 text (byte 3: invalid continuation byte)"),
])
def test_an_empty_or_undecodable_text_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "book.txt"
    path.write_bytes(content)
    with pytest.raises(PlatformError) as info:
        read_rows(str(path))
    assert str(info.value) == message.format(path=path)


def lm_spec(tmp_path, model_dir, book, methods, **extra) -> str:
    spec = {"name": "tiny_lm", "task": "language_modeling", "models": [{"name": "tiny", "source": str(model_dir)}],
            "datasets": [{"name": "book", "train": str(book)}], "methods": methods,
            "train": {"max_steps": 3, "batch_size": 2, "max_seq_len": 32, "log_every": 1, "eval_every_steps": 3,
                      "eval_subset": 1},
            "generation": {"batch_size": 4},
            "language_modeling": {"windows": 3, "prompt_tokens": 8, "continuation_tokens": 4}, **extra}
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_a_language_modelling_grid_scores_bits_per_byte_and_registers_the_best(tracking, tmp_path, tiny_lm_plain_dir):
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 3)
    spec = lm_spec(tmp_path, tiny_lm_plain_dir, book, [{"name": "base"}, {"name": "lora", "r": 4, "learning_rate": 1e-2}])
    assert load_spec(spec).registry.metric == "bits_per_byte" and not load_spec(spec).registry.greater_is_better
    assert compare.main([spec]) == 0
    client = MlflowClient()
    cells = {r.data.tags["method"]: r for r in client.search_runs(every_experiment())
             if "mlflow.parentRunId" in r.data.tags}
    for method, run in cells.items():
        metrics = run.data.metrics
        for key in ("perplexity", "bits_per_byte", "bits_per_char", "token_accuracy", "bleu_1", "bleu_4",
                    "overfitting_ratio", "generalisation_gap", "generation_ms_per_token", "generation_tokens_per_s"):
            assert key in metrics, (method, key)
        assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]), rel=1e-4)
    assert run.data.tags["data.eval"] == f"{book} (last 5%: the test part)"
    contexts = {i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"] for i in run.inputs.dataset_inputs}
    assert contexts == {"book/train": "training", "book/validation": "validation", "book/eval": "evaluation"}
    history = client.get_metric_history(cells["lora"].info.run_id, "val_bits_per_byte")
    assert [m.step for m in history] == [3]
    assert client.get_model_version_by_alias("text-generator", "champion")


def test_label_smoothing_enters_the_training_loss_and_never_perplexity(tracking, tmp_path, tiny_lm_plain_dir):
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 3)
    runs = []
    for smoothing in (0.0, 0.3):
        # A learning rate too small to move a float32 weight: the two models stay the same.
        spec = lm_spec(tmp_path, tiny_lm_plain_dir, book, [{"name": "full", "learning_rate": 1e-30}],
                       train={"max_steps": 2, "batch_size": 2, "max_seq_len": 32, "log_every": 1,
                              "label_smoothing": smoothing}, registry={"promote": False})
        assert compare.main([spec]) == 0
        newest_first = MlflowClient().search_runs(every_experiment(), order_by=["attributes.start_time DESC"])
        runs.append(next(r for r in newest_first if "mlflow.parentRunId" in r.data.tags).data.metrics)
    plain, smoothed = runs
    assert smoothed["train_loss"] > plain["train_loss"]
    for key in ("eval_loss", "perplexity", "bits_per_byte", "token_accuracy"):
        assert smoothed[key] == plain[key], key


def test_a_response_field_missing_from_a_row_names_the_row(tmp_path, tiny_lm_plain_dir):
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "a", "answer": "b"}, {"prompt": "c"}])
    spec = load_spec(lm_spec(tmp_path, tiny_lm_plain_dir, rows, [{"name": "full"}],
                             language_modeling={"response_field": "answer"}))
    spec.datasets[0].text_field = "prompt"
    with pytest.raises(PlatformError, match=f"^{rows} row 2: field 'answer' is missing$"):
        get_task("language_modeling").load_splits(spec.datasets[0], spec)


def test_an_unknown_task_names_the_known_ones(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "task": "translation", "datasets": [{"name": "d", "train": "x.jsonl"}],
                                    "methods": [{"name": "base"}]}))
    with pytest.raises(PlatformError, match="task: unknown task 'translation' "
                                            r"\(known: summarization, classification, language_modeling\)"):
        load_spec(path)
