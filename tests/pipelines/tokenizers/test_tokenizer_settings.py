"""TokenizerSettings: defaults, and the sizes it refuses, with the field named."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.tokenizers.settings import SPECIAL_TOKENS, TokenizerSettings


def test_defaults_are_a_byte_level_bpe_of_4096():
    settings = TokenizerSettings()
    assert (settings.kind, settings.vocab_size, settings.min_frequency) == ("bpe", 4096, 1)
    assert SPECIAL_TOKENS == ("<pad>", "<unk>", "<bos>", "<eos>")


def test_every_field_is_described():
    assert all(field.description for field in TokenizerSettings.model_fields.values())


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_a_vocabulary_of_only_special_tokens_is_refused(kind):
    with pytest.raises(ValidationError, match="vocab_size: 4 is not more than the 4 special tokens"):
        TokenizerSettings(kind=kind, vocab_size=4)


def test_bpe_needs_room_for_the_byte_alphabet():
    with pytest.raises(ValidationError, match="vocab_size: 259 is less than the 260 a byte-level BPE needs"):
        TokenizerSettings(kind="bpe", vocab_size=259)
    assert TokenizerSettings(kind="bpe", vocab_size=260).vocab_size == 260
    assert TokenizerSettings(kind="char", vocab_size=5).vocab_size == 5


def test_unknown_keys_and_bad_values_are_refused():
    with pytest.raises(ValidationError, match="extra"):
        TokenizerSettings(kind="char", vocab=10)
    with pytest.raises(ValidationError, match="kind"):
        TokenizerSettings(kind="unigram")
    with pytest.raises(ValidationError, match="min_frequency"):
        TokenizerSettings(min_frequency=0)
