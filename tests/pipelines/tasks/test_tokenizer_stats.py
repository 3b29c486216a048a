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


TRAIN = ["el gato y el perro y el gato", "el perro come y el gato duerme"] * 3


def trained(kind: str, vocab_size: int):
    from pipelines.tokenizers.settings import TokenizerSettings
    from pipelines.tokenizers.training import train_tokenizer

    return train_tokenizer(TRAIN, TokenizerSettings(kind=kind, vocab_size=vocab_size))


def test_a_small_word_vocabulary_counts_rare_pieces_unknown():
    tokenizer = trained("word", 8)  # 4 specials + ' ', 'el', 'gato', 'y' (the 4 most frequent)
    # 'el gato, el dragón.' -> el _ gato <unk> _ el _ <unk> <unk>: 3 unknown (',', 'dragón', '.') of 9.
    stats = tokenizer_stats(tokenizer, ["el gato, el dragón."])
    assert stats == {"tokens_per_example": 9.0, "unknown_token_share": pytest.approx(3 / 9),
                     "split_word_share": 0.5}  # of 4 words, 'gato,' and 'dragón.' are two tokens


def test_char_tokens_split_every_longer_word():
    stats = tokenizer_stats(trained("char", 100), ["el gato ñ"])
    assert stats == {"tokens_per_example": 9.0, "unknown_token_share": pytest.approx(1 / 9),
                     "split_word_share": pytest.approx(2 / 3)}  # 'el', 'gato' split; 'ñ' one (unknown)


def test_byte_level_bpe_has_no_unknown_tokens():
    stats = tokenizer_stats(trained("bpe", 300), ["el gato, el dragón ☃."])
    assert stats["unknown_token_share"] == 0 and stats["tokens_per_example"] > 0
