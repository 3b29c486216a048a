"""How a tokenizer cuts a corpus: tokens per example, the share of unknown tokens, and how often a
word is split into several tokens. Compared across models next to their downstream accuracy.

Words are whitespace-separated spans of the raw text; a word counts as split when more than one
token's character offsets overlap it. Offsets make the count the same for WordPiece (`##` pieces),
byte-level BPE (`Ġ` prefixes) and SentencePiece (`▁` prefixes), which a string test could not, and
for the char, bpe and word tokenizers trained here (`pipelines.tokenizers`), whose offsets count
characters of the original text too.
"""
from __future__ import annotations

import re

_WORD = re.compile(r"\S+")


def tokenizer_stats(tokenizer, texts: list[str]) -> dict[str, float]:
    """Means over `texts`, special tokens excluded (they are the same for every input)."""
    unk_id = tokenizer.unk_token_id
    n_tokens = n_unknown = n_words = n_split = 0
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        n_tokens += len(ids)
        if unk_id is not None:
            n_unknown += sum(1 for i in ids if i == unk_id)
        for word in _WORD.finditer(text):
            start, end = word.span()
            pieces = sum(1 for a, b in offsets if a < end and b > start and b > a)
            n_words += 1
            n_split += pieces > 1
    return {
        "tokens_per_example": n_tokens / max(1, len(texts)),
        "unknown_token_share": n_unknown / max(1, n_tokens),
        "split_word_share": n_split / max(1, n_words),
    }
