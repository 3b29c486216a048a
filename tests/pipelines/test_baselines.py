"""Reference bits per character, on small strings written here (hand-checked where exact)."""
from __future__ import annotations

import math
import random

import pytest

from pipelines.baselines import (
    char_ngram_bits_per_char,
    compressor_bits_per_char,
    reference_bits_per_char,
)

PHRASE = "el gato come pescado y el perro come carne. "


def random_text(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnñopqrstuvwxyz áé,.") for _ in range(n))


def test_unigram_by_hand():
    # Train 'aab': alphabet {a, b} + escape, 3 counts: P(a) = 3/6, P(b) = 2/6.
    assert char_ngram_bits_per_char("aab", "ab", 1) == pytest.approx((1 + math.log2(3)) / 2)


def test_bigram_by_hand():
    # Train 'aab': pairs aa, ab. Test 'ab' follows the last train character 'b', never followed
    # by anything: P(a | b) = 1/3; then P(b | a) = (1 + 1) / (2 + 3).
    assert char_ngram_bits_per_char("aab", "ab", 2) == pytest.approx((math.log2(3) + math.log2(5 / 2)) / 2)


@pytest.mark.parametrize("order", [1, 2])
def test_an_unseen_character_is_charged_its_escape_and_its_bytes(order):
    # '☃' is 3 UTF-8 bytes: 24 bits on top of the escape's probability (1/6 for the unigram,
    # 1/3 for the bigram after 'b').
    escape_bits = math.log2(6) if order == 1 else math.log2(3)
    assert char_ngram_bits_per_char("aab", "☃", order) == pytest.approx(escape_bits + 24)
    assert char_ngram_bits_per_char("aab", "ab☃", order) > char_ngram_bits_per_char("aab", "ab", order) + 8


def test_a_bigram_beats_a_unigram_on_repetitive_text():
    train, test = PHRASE * 50, PHRASE * 5
    assert char_ngram_bits_per_char(train, test, 2) < 0.6 * char_ngram_bits_per_char(train, test, 1)


def test_repeating_the_train_text_costs_xz_almost_nothing():
    train = random_text(4000)
    assert compressor_bits_per_char(train, train, "xz") < 0.2
    assert compressor_bits_per_char(train, random_text(4000, seed=1), "xz") > 3  # about log2(32) = 5 fresh


def test_every_figure_is_positive_on_random_text():
    figures = reference_bits_per_char(random_text(3000), random_text(1000, seed=1))
    assert list(figures) == ["char unigram", "char bigram", "gzip -9", "xz -9"]
    assert all(0 < bits < 16 for bits in figures.values()), figures


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="order: 3"):
        char_ngram_bits_per_char("ab", "ab", 3)
    with pytest.raises(ValueError, match="compressor: 'zstd'"):
        compressor_bits_per_char("ab", "ab", "zstd")
    with pytest.raises(ValueError, match="test: empty"):
        compressor_bits_per_char("ab", "", "gzip")
