"""What the language-modelling task trains and scores on: a document split into its parts, packed
into fixed-length blocks, or prompt + response rows; each block knows the characters and bytes
its scored tokens cover, and what its unknown tokens cost to spell."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines.errors import PlatformError
from pipelines.tasks.summarization import IGNORE_INDEX

VALIDATION_SHARE = TEST_SHARE = 0.05


def text_splits(text: str) -> tuple[str, str, str]:
    """(train, validation, test) of one document: contiguous, the last 5% test, the 5% before it
    validation. The Quijote split of every experiment on that book."""
    test_start = round(len(text) * (1 - TEST_SHARE))
    validation_start = round(len(text) * (1 - TEST_SHARE - VALIDATION_SHARE))
    return text[:validation_start], text[validation_start:test_start], text[test_start:]


@dataclass
class Block:
    input_ids: list[int]
    labels: list[int]
    scored_bytes: int  # UTF-8 bytes of the text the scored tokens cover
    scored_chars: int
    truncated: bool = False
    unknown_tokens: int = 0  # scored tokens that are the tokenizer's unknown token
    unknown_nats: float = 0.0  # what spelling out those unknown words costs (see pack)

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


@dataclass
class _Stream:
    """A token stream with, per token, the text it stands for (the gap since the previous token's
    end, so whitespace a tokenizer drops is still counted) and the nats of spelling an unknown one."""

    ids: list[int]
    chars: list[int]
    n_bytes: list[int]
    unknown: list[float | None]


def _tokens(tokenizer, texts: list[str], unknown_cost: Callable[[str], float] | None) -> _Stream:
    stream = _Stream([], [], [], [])
    unk_id = tokenizer.unk_token_id
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        covered = 0
        for token, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
            piece = text[covered:end] if end > covered else ""
            covered = max(covered, end)
            stream.ids.append(token)
            stream.chars.append(len(piece))
            stream.n_bytes.append(len(piece.encode("utf-8")))
            is_unknown = unk_id is not None and token == unk_id
            stream.unknown.append((unknown_cost(text[start:end]) if unknown_cost else 0.0) if is_unknown else None)
        if tokenizer.eos_token_id is not None:
            stream.ids.append(tokenizer.eos_token_id)
            stream.chars.append(0)
            stream.n_bytes.append(0)
            stream.unknown.append(None)
    return stream


def pack(tokenizer, texts: list[str], block: int, source: str, *, min_blocks: int = 1,
         unknown_cost: Callable[[str], float] | None = None) -> list[Block]:
    """Documents joined by the end-of-text token and cut into blocks of `block` tokens (the last
    partial block is dropped). A block's first token is not scored (nothing predicts it), so its
    text does not count. `unknown_cost(word)` is the nats of spelling an unknown token's text
    (a tokenizer that maps rare words to one unknown token must pay for them somewhere, or its
    bits per character flatter it)."""
    stream = _tokens(tokenizer, texts, unknown_cost)
    count = len(stream.ids) // block
    if count < min_blocks:
        need = f"one batch of train.batch_size={min_blocks}" if min_blocks > 1 else "one block"
        raise PlatformError(f"{source}: {len(stream.ids)} tokens make {count} block(s) of train.max_seq_len={block}, "
                            f"fewer than {need}")
    blocks = []
    for start in range(0, count * block, block):
        scored = range(start + 1, start + block)
        unknown = [stream.unknown[i] for i in scored if stream.unknown[i] is not None]
        ids = stream.ids[start : start + block]
        blocks.append(Block(ids, list(ids), sum(stream.n_bytes[i] for i in scored), sum(stream.chars[i] for i in scored),
                            unknown_tokens=len(unknown), unknown_nats=sum(unknown)))
    return blocks


def _scored_text(tokenizer, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([t for t, label in zip(ids[1:], labels[1:]) if label != IGNORE_INDEX])


def prompt_response(tokenizer, prompt: str, response: str, max_len: int) -> Block:
    """One row: the prompt, then the response and the end token, the loss on the response only."""
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tail = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    truncated = len(head) + len(tail) > max_len
    ids = (head + tail)[:max_len]
    labels = ([IGNORE_INDEX] * len(head) + tail)[:max_len]
    scored = _scored_text(tokenizer, ids, labels)
    return Block(ids, labels, len(scored.encode("utf-8")), len(scored), truncated)
