"""How text is cut into pieces before a vocabulary is looked up, shared by the tokenizers and the
spelling model so both cut exactly alike (the regexes run in the `tokenizers` engine, Oniguruma,
whose `\\w` matches accented letters such as á and ñ)."""
from __future__ import annotations

from tokenizers import Regex, pre_tokenizers

WORD_PIECES = r"\w+|\s+|[^\w\s]"  # a word, a whitespace run, or one punctuation mark
ONE_CHARACTER = r"[\s\S]"  # any single character, newline included


def word_splitter() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(WORD_PIECES), "isolated")


def char_splitter() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(ONE_CHARACTER), "isolated")


_WORD_SPLITTER = word_splitter()


def word_pieces(text: str) -> list[str]:
    """`text` cut into words, whitespace runs and punctuation marks; their concatenation is `text`."""
    return [piece for piece, _ in _WORD_SPLITTER.pre_tokenize_str(text)]
