"""Label sets, encoding and batched prediction for sequence classification."""
from __future__ import annotations

import pytest
import torch

from pipelines.config import DatasetSource
from pipelines.errors import PlatformError
from pipelines.sources.datasets import Example, Splits
from pipelines.tasks.classification import collate_labels, encode_text, predict_proba, prepare_labels


def examples(*labels):
    return [Example(text=f"text {i}", references=(label,), row=i + 1) for i, label in enumerate(labels)]


def dataset(**kw):
    return DatasetSource(name="d", train="t.jsonl", eval="e.jsonl", **kw)


def test_label_map_and_drop_labels_apply_to_both_splits():
    splits = Splits(train=examples("0", "1", "2", "1"), eval=examples("1", "2", "0"))
    out = prepare_labels(splits, dataset(label_map={"0": "negative", "1": "positive", "2": "neutral"},
                                         drop_labels=["neutral"]))
    assert out.labels == ("negative", "positive")
    assert [ex.references[0] for ex in out.train] == ["negative", "positive", "positive"]
    assert [ex.row for ex in out.eval] == [1, 3]  # row numbers still point into the source file


def test_declared_labels_fix_the_class_order_and_allow_multiclass():
    splits = Splits(train=examples("b", "a", "c"), eval=examples("c"))
    assert prepare_labels(splits, dataset(labels=["c", "b", "a"])).labels == ("c", "b", "a")


def test_inferred_labels_are_sorted_and_must_be_binary():
    assert prepare_labels(Splits(examples("pos", "neg"), examples("neg")), dataset()).labels == ("neg", "pos")
    with pytest.raises(PlatformError, match="binary by default but its train split has 1 labels"):
        prepare_labels(Splits(examples("pos", "pos"), examples("pos")), dataset())


def test_an_eval_label_outside_the_set_names_its_row_and_file():
    with pytest.raises(PlatformError, match=r"e.jsonl row 2: label 'maybe' is not in the declared labels"):
        prepare_labels(Splits(examples("a", "b"), examples("a", "maybe")), dataset())


def test_encode_truncates_and_says_so(tiny_encoder_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    short = encode_text(tokenizer, "good movie", 1, max_len=16)
    assert not short.truncated and short.input_ids[0] == tokenizer.cls_token_id and short.n_tokens == 4
    long = encode_text(tokenizer, "good movie " * 20, 0, max_len=16)
    assert long.truncated and long.n_tokens == 16


def test_collate_right_pads_and_carries_labels():
    from pipelines.tasks.classification import EncodedText

    batch = collate_labels([EncodedText([5, 6, 7], 1, False), EncodedText([5], 0, False)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


@pytest.mark.parametrize("model_fixture", ["tiny_encoder_dir", "tiny_lm_dir"])
def test_batched_prediction_equals_one_at_a_time(request, model_fixture):
    from pipelines.sources.models import load_classifier

    model, tokenizer, _ = load_classifier(str(request.getfixturevalue(model_fixture)), ["neg", "pos"])
    texts = ["good", "the movie was really bad and dull", "a very nice story", "awful"]
    batched, truncated = predict_proba(model, tokenizer, texts, max_len=32, batch_size=4)
    alone = torch.cat([predict_proba(model, tokenizer, [t], max_len=32)[0] for t in texts])
    assert truncated == [False] * 4
    assert predict_proba(model, tokenizer, ["good " * 40], max_len=32)[1] == [True]
    assert batched.shape == (4, 2)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched.sum(-1), torch.ones(4))
