"""Add-one smoothed character models with an escape for unseen characters.

Both the bits-per-character baselines (`pipelines.baselines`) and the unknown-word charge
(`pipelines.tokenizers.spelling`) price text with `CharCounts`, so an unseen character costs the
same in both: the escape symbol's probability, then 8 bits per UTF-8 byte (a uniform byte model).
That keeps every cost finite and every code complete: nothing is ever skipped.

A model is next-symbol counts per context. The unigram has one context (""); the bigram's
context is the previous character (or `ESCAPE` after an unseen one, or "" at the start).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import pairwise

ESCAPE = "<esc>"  # never a character: every alphabet entry has length 1
BOUNDARY = ""  # the start context and, where a model has one, the end symbol
BYTE_NATS = 8 * math.log(2)


def escaped_char_nats(char: str) -> float:
    """What spelling out an unseen character costs after its escape: 8 bits per UTF-8 byte."""
    return BYTE_NATS * len(char.encode("utf-8"))


@dataclass
class CharCounts:
    """Next-symbol counts per context, smoothed add-one over the train alphabet, the escape and
    the `extra` symbols (the spelling model's end of word)."""

    alphabet: frozenset[str]
    extra: tuple[str, ...] = ()
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    totals: Counter = field(default_factory=Counter)  # per context, kept with `counts` by `add`

    @property
    def n_symbols(self) -> int:
        return len(self.alphabet) + 1 + len(self.extra)

    def symbol(self, char: str) -> str:
        return char if char in self.alphabet else ESCAPE

    def add(self, context: str, symbol: str, weight: int = 1) -> None:
        self.counts[context][symbol] += weight
        self.totals[context] += weight

    def symbol_nats(self, context: str, symbol: str) -> float:
        """-ln P(symbol | context), the symbol already mapped (a char, `ESCAPE` or an extra)."""
        seen = self.counts.get(context)
        count = seen.get(symbol, 0) if seen else 0
        return -math.log((count + 1) / (self.totals[context] + self.n_symbols))

    def char_nats(self, context: str, char: str) -> float:
        """-ln P(char | context), an unseen character paying its escape and its bytes."""
        symbol = self.symbol(char)
        cost = self.symbol_nats(context, symbol)
        return cost + escaped_char_nats(char) if symbol == ESCAPE else cost

    def next_symbols(self) -> list[str]:
        return sorted(self.alphabet) + [ESCAPE, *self.extra]

    def to_dict(self) -> dict:
        return {"alphabet": "".join(sorted(self.alphabet)), "extra": list(self.extra),
                "counts": {context: dict(seen) for context, seen in self.counts.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> CharCounts:
        model = cls(frozenset(data["alphabet"]), tuple(data["extra"]))
        for context, seen in data["counts"].items():
            for symbol, n in seen.items():
                model.add(context, symbol, n)
        return model


def unigram_counts(text: str) -> CharCounts:
    model = CharCounts(frozenset(text))
    for char, n in Counter(text).items():
        model.add(BOUNDARY, char, n)
    return model


def bigram_counts(text: str) -> CharCounts:
    model = CharCounts(frozenset(text))
    for (previous, char), n in Counter(pairwise(text)).items():
        model.add(previous, char, n)
    if text:
        model.add(BOUNDARY, text[0])
    return model
