"""The reference figures a language model must beat, in bits per character of a test text.

A model trained on `train` and scored on `test` is only interesting if it beats what simple,
well-understood coders reach with the same train text: character n-gram counts (order 1 and 2)
and general-purpose compressors (gzip -9, xz -9). Characters are Unicode code points.
"""
from __future__ import annotations

import gzip
import lzma
import math
from typing import Literal

from pipelines.char_model import BOUNDARY, bigram_counts, unigram_counts


def char_ngram_bits_per_char(train: str, test: str, order: int) -> float:
    """Bits per character of `test` under add-one smoothed character counts of `train` (order 1:
    unigram, 2: bigram), over the train alphabet plus an escape: an unseen test character pays the
    escape's probability and 8 bits per UTF-8 byte, so it is charged, never skipped."""
    if order not in (1, 2):
        raise ValueError(f"order: {order} is not 1 (unigram) or 2 (bigram)")
    if not test:
        raise ValueError("test: empty text has no bits per character")
    if order == 1:
        model = unigram_counts(train)
        nats = sum(model.char_nats(BOUNDARY, char) for char in test)
    else:
        model = bigram_counts(train)
        # The first test character follows the last train one, as if test continued train
        # (one character among many; it spares a special case).
        previous = model.symbol(train[-1]) if train else BOUNDARY
        nats = 0.0
        for char in test:
            nats += model.char_nats(previous, char)
            previous = model.symbol(char)
    return nats / math.log(2) / len(test)


def _compressed_size(data: bytes, compressor: str) -> int:
    if compressor == "gzip":
        return len(gzip.compress(data, compresslevel=9))  # the same deflate stream as `gzip -9`
    if compressor == "xz":
        return len(lzma.compress(data, preset=9))  # `xz -9`
    raise ValueError(f"compressor: '{compressor}' is not gzip or xz")


def compressor_bits_per_char(train: str, test: str, compressor: Literal["gzip", "xz"]) -> float:
    """What `test` adds to the compressed size of `train`, in bits per test character.

    The increment is the fair figure: the language model has learnt from `train` before it is
    scored on `test`, so the compressor may too (its window/dictionary holds `train` when `test`
    starts). Compressing `test` alone would charge the compressor for learning the language
    from scratch; the headers and trailers, the same in both sizes, cancel in the difference.
    Limit: gzip's window is 32 KiB, so it remembers only the end of a long train text.
    """
    if not test:
        raise ValueError("test: empty text has no bits per character")
    train_bytes = train.encode("utf-8")
    both = _compressed_size(train_bytes + test.encode("utf-8"), compressor)
    return 8 * (both - _compressed_size(train_bytes, compressor)) / len(test)


def reference_bits_per_char(train: str, test: str) -> dict[str, float]:
    """The four reference figures, in bits per character of `test` (lower is better)."""
    return {
        "char unigram": char_ngram_bits_per_char(train, test, 1),
        "char bigram": char_ngram_bits_per_char(train, test, 2),
        "gzip -9": compressor_bits_per_char(train, test, "gzip"),
        "xz -9": compressor_bits_per_char(train, test, "xz"),
    }
