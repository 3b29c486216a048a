"""The unknown-word charge: what spelling out an `<unk>` token's text costs.

A word-level (or char-level) tokenizer maps rare words to `<unk>`, so a model's loss on `<unk>`
prices only "some rare word", not which one: its bits per character look better than they are.
Adding `SpellingModel.nats(surface)` for every `<unk>` token (its surface read from the offsets)
makes the figure an honest code length for the text again.

The model is a character bigram, fitted on every piece of the train texts as the word tokenizer
cuts them (words, whitespace runs, punctuation marks; each occurrence counted), with a start
context and an end-of-piece symbol, add-one smoothed over the train alphabet plus an escape
(see `pipelines.char_model`). Limit: fitted on occurrences, it knows frequent words best, while
the pieces it prices are the rare ones; any distribution keeps the code valid, this one is
simply not the tightest.
"""
from __future__ import annotations

import math
from collections import Counter

from pipelines.char_model import BOUNDARY, CharCounts
from pipelines.tokenizers.pieces import word_pieces

END = BOUNDARY  # the end-of-piece symbol, written like the start context (never a character)


class SpellingModel:
    """Nats to spell a piece: start, its characters, end."""

    def __init__(self, counts: CharCounts):
        self.counts = counts

    @classmethod
    def fit(cls, texts: list[str]) -> SpellingModel:
        pieces = Counter(piece for text in texts for piece in word_pieces(text))
        counts = CharCounts(frozenset("".join(pieces)), extra=(END,))
        for piece, n in pieces.items():
            for context, symbol in zip((BOUNDARY, *piece), (*piece, END)):
                counts.add(context, symbol, n)
        return cls(counts)

    def nats(self, surface: str) -> float:
        """-ln P(surface) as one piece: every character given the one before it, then the end."""
        total, context = 0.0, BOUNDARY
        for char in surface:
            total += self.counts.char_nats(context, char)
            context = self.counts.symbol(char)
        return total + self.counts.symbol_nats(context, END)

    def next_symbol_probabilities(self, context: str) -> dict[str, float]:
        """P(next | context) over every symbol (characters, escape, end); they sum to 1."""
        return {s: math.exp(-self.counts.symbol_nats(context, s)) for s in self.counts.next_symbols()}

    def to_dict(self) -> dict:
        return self.counts.to_dict()

    @classmethod
    def from_dict(cls, data: dict) -> SpellingModel:
        return cls(CharCounts.from_dict(data))
