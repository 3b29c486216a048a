"""What tokenizer to train: its kind, its size and how rare a piece may be."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")  # ids 0..3 in every kind
BYTE_ALPHABET = 256  # a byte-level BPE starts from every byte


class TokenizerSettings(BaseModel):
    """A tokenizer trained on the task's train texts (see `pipelines.tokenizers.training`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["char", "bpe", "word"] = Field(
        "bpe", description="char: one token per character; bpe: byte-level BPE (never unknown); "
        "word: words, whitespace runs and punctuation marks, the rare ones unknown")
    vocab_size: int = Field(
        4096, ge=1, description="the whole vocabulary, special tokens included: char keeps the most frequent "
        "characters, word the most frequent pieces, bpe merges until it has this many tokens")
    min_frequency: int = Field(
        1, ge=1, description="a character, piece or merge seen fewer times in the train texts is not kept")

    @model_validator(mode="after")
    def _room_beyond_specials(self):
        n_special = len(SPECIAL_TOKENS)
        if self.vocab_size <= n_special:
            raise ValueError(f"vocab_size: {self.vocab_size} is not more than the {n_special} special tokens "
                             f"({', '.join(SPECIAL_TOKENS)})")
        if self.kind == "bpe" and self.vocab_size < n_special + BYTE_ALPHABET:
            raise ValueError(f"vocab_size: {self.vocab_size} is less than the {n_special + BYTE_ALPHABET} a "
                             f"byte-level BPE needs ({n_special} special tokens + its {BYTE_ALPHABET} bytes)")
        return self
