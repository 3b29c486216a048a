"""The spelling model behind the unknown-word charge, checked by hand on tiny corpora."""
from __future__ import annotations

import json
import math

import pytest

from pipelines.char_model import BYTE_NATS, ESCAPE
from pipelines.tokenizers.pieces import word_pieces
from pipelines.tokenizers.spelling import END, SpellingModel

TEXTS = ["la casa de la sierra, la casa del río.", "De la casa a la plaza; la casa es grande.\n"]


def test_pieces_are_words_whitespace_runs_and_punctuation_with_accents_inside_words():
    # Oniguruma's \w matches accented letters: 'río', 'año', 'señor' stay whole.
    assert word_pieces("año señor,  ¿río?\n") == ["año", " ", "señor", ",", "  ", "¿", "río", "?", "\n"]


def test_cost_by_hand():
    # One piece 'ab': alphabet {a, b} + escape + end = 4 symbols; each context saw one symbol.
    model = SpellingModel.fit(["ab"])
    assert model.nats("ab") == pytest.approx(3 * math.log(5 / 2))
    # 'x' is unseen: start -> escape (1/5), its byte (8 bits), then end after the escape (1/4).
    assert model.nats("x") == pytest.approx(math.log(5) + BYTE_NATS + math.log(4))


def test_a_frequent_word_costs_less_than_a_random_string_of_its_length():
    model = SpellingModel.fit(TEXTS)
    assert model.nats("casa") < model.nats("zqjx") and model.nats("casa") < model.nats("aacs")


def test_unseen_characters_cost_a_positive_finite_amount_beyond_their_bytes():
    model = SpellingModel.fit(TEXTS)
    cost = model.nats("☃✓")
    assert math.isfinite(cost) and cost > 2 * 3 * BYTE_NATS  # two 3-byte characters


@pytest.mark.parametrize("context", ["", "a", ESCAPE, "z"])
def test_next_symbol_probabilities_sum_to_one(context):
    probabilities = SpellingModel.fit(TEXTS).next_symbol_probabilities(context)
    assert END in probabilities and ESCAPE in probabilities
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-12)


def test_the_model_survives_json():
    model = SpellingModel.fit(TEXTS)
    again = SpellingModel.from_dict(json.loads(json.dumps(model.to_dict())))
    for surface in ["casa", "plaza", "☃", " ", ",", ""]:
        assert again.nats(surface) == model.nats(surface)
