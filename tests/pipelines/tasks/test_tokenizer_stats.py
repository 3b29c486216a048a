"""Tokenizer statistics on hand-checked examples."""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from pipelines.tasks.tokenizer_stats import tokenizer_stats


@pytest.fixture(scope="module")
def wordpiece(tiny_encoder_dir):
    return AutoTokenizer.from_pretrained(tiny_encoder_dir)


def test_whole_words_are_not_split(wordpiece):
    # Every word of the fixture vocabulary is one token: 3 tokens, none unknown, none split.
    assert tokenizer_stats(wordpiece, ["good movie plot"]) == {
        "tokens_per_example": 3.0, "unknown_token_share": 0.0, "split_word_share": 0.0}


def test_unknown_characters_and_split_words_are_counted(wordpiece):
    pieces = wordpiece.tokenize("goodstory ☃")
    assert pieces[0] == "good" and pieces[1].startswith("##") and pieces[-1] == "[UNK]"
    n = len(pieces) + 1  # and 'fun', one token
    stats = tokenizer_stats(wordpiece, ["goodstory ☃", "fun"])
    # One token of n is unknown; of 3 words only 'goodstory' is split ('☃' is one [UNK]).
    assert stats == {"tokens_per_example": n / 2, "unknown_token_share": 1 / n, "split_word_share": pytest.approx(1 / 3)}


def test_byte_level_bpe_counts_a_word_once_despite_its_leading_space(tiny_lm_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    # The fixture's BPE cuts this as Kim | Ġl o s t | Ġkeys: 'lost' is split, 'keys' is one token
    # although its piece starts on the space before it.
    assert tokenizer.tokenize("Kim lost keys") == ["Kim", "Ġl", "o", "s", "t", "Ġkeys"]
    assert tokenizer_stats(tokenizer, ["Kim lost keys"]) == {
        "tokens_per_example": 6.0, "unknown_token_share": 0.0, "split_word_share": pytest.approx(1 / 3)}
