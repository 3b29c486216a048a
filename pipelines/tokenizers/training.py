"""Tokenizers trained on a task's train texts with HF `tokenizers`, and cached by their content.

Three kinds (see `TokenizerSettings`), all with `<pad> <unk> <bos> <eos>` as ids 0..3, all wrapped
in a `PreTrainedTokenizerFast` whose offsets count characters of the original text:
- char: each character is a token; unseen (or dropped rare) characters become `<unk>`.
- bpe: byte-level BPE; every text is encoded without `<unk>` and decoded back exactly.
- word: words, whitespace runs and punctuation marks are tokens, so decoding gives the text back
  except that rare pieces read `<unk>`.
Encoding adds no special token, with or without `add_special_tokens`: callers place `<bos>` and
`<eos>` themselves (language modelling appends the end-of-text token between documents).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from pipelines.sources.models import cache_root
from pipelines.tokenizers.pieces import char_splitter, word_splitter
from pipelines.tokenizers.settings import SPECIAL_TOKENS, TokenizerSettings
from pipelines.tokenizers.spelling import SpellingModel

KINDS_WITH_UNKNOWN = ("char", "word")  # the kinds that can emit `<unk>`, so need a spelling model
SPELLING_FILE = "spelling.json"
SETTINGS_FILE = "settings.json"


def _word_level(splitter, settings: TokenizerSettings):
    # WordLevelTrainer keeps the most frequent pieces (ties broken by the piece, so training is
    # deterministic), the special tokens first and counted in vocab_size.
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = splitter
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(vocab_size=settings.vocab_size, min_frequency=settings.min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    return tokenizer, trainer


def _char(settings: TokenizerSettings):
    return _word_level(char_splitter(), settings)


def _word(settings: TokenizerSettings):
    return _word_level(word_splitter(), settings)


def _bpe(settings: TokenizerSettings):
    tokenizer = Tokenizer(models.BPE())  # no unk token: every byte is in the initial alphabet
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=settings.vocab_size, min_frequency=settings.min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return tokenizer, trainer


_BUILDERS = {"char": _char, "bpe": _bpe, "word": _word}


def train_tokenizer(texts: list[str], settings: TokenizerSettings) -> PreTrainedTokenizerFast:
    """A tokenizer of `settings.kind` trained on `texts` (see the module docstring)."""
    tokenizer, trainer = _BUILDERS[settings.kind](settings)
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>",
        clean_up_tokenization_spaces=False,  # it would turn " ." into "." and break the exact round trip
    )


@dataclass
class TokenizerRecord:
    """What the ETL step did, for the run's log."""

    key: str
    path: str  # the cache folder, loadable with AutoTokenizer.from_pretrained
    kind: str
    vocab_size: int  # the actual size: at most the requested one (a small text has fewer pieces)
    trained_s: float  # 0 when loaded from the cache
    from_cache: bool


@dataclass
class TrainedTokenizer:
    """The tokenizer, the spelling model that prices its `<unk>` tokens (None for bpe, which
    never emits one) and the record of how it was obtained."""

    tokenizer: PreTrainedTokenizerFast
    spelling: SpellingModel | None
    record: TokenizerRecord


def default_cache_dir() -> Path:
    return cache_root() / "tokenizers"


def cache_key(texts: list[str], settings: TokenizerSettings) -> str:
    """16 hex characters of a sha256 over the texts in order and the settings. Each text is
    length-prefixed, so ["ab", "c"] and ["a", "bc"] get different keys."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    digest.update(settings.model_dump_json().encode("utf-8"))
    return digest.hexdigest()[:16]


def _is_complete(folder: Path, kind: str) -> bool:
    needed = ["tokenizer.json", "tokenizer_config.json", SETTINGS_FILE]
    needed += [SPELLING_FILE] if kind in KINDS_WITH_UNKNOWN else []
    return all((folder / name).is_file() for name in needed)


def _write(folder: Path, trained: TrainedTokenizer, settings: TokenizerSettings) -> None:
    trained.tokenizer.save_pretrained(folder)
    if trained.spelling is not None:
        (folder / SPELLING_FILE).write_text(json.dumps(trained.spelling.to_dict(), ensure_ascii=False))
    (folder / SETTINGS_FILE).write_text(settings.model_dump_json(indent=2))


def _write_atomically(target: Path, trained: TrainedTokenizer, settings: TokenizerSettings) -> None:
    """Written into a temporary folder beside `target`, then renamed: an interrupted write leaves
    only a dot-folder that is never read, never a half cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would make a shared cache private
        _write(staging, trained, settings)
        if target.exists():  # incomplete (a complete one is loaded, not retrained): not a cache
            shutil.rmtree(target)
        try:
            os.replace(staging, target)
        except OSError:
            if not _is_complete(target, settings.kind):
                raise
            # Another process wrote the same key first: same texts and settings, same tokenizer.
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _load(folder: Path, key: str, settings: TokenizerSettings) -> TrainedTokenizer:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    spelling = None
    if settings.kind in KINDS_WITH_UNKNOWN:
        spelling = SpellingModel.from_dict(json.loads((folder / SPELLING_FILE).read_text()))
    record = TokenizerRecord(key, str(folder), settings.kind, len(tokenizer), 0.0, True)
    return TrainedTokenizer(tokenizer, spelling, record)


def cached_tokenizer(texts: list[str], settings: TokenizerSettings, cache_dir: Path) -> TrainedTokenizer:
    """The tokenizer for `texts` and `settings`: loaded from `cache_dir/<key>/` when a complete
    one is there, else trained (with its spelling model, for char and word) and written there.
    `cache_dir` is usually `default_cache_dir()`."""
    key = cache_key(texts, settings)
    target = Path(cache_dir) / key
    if _is_complete(target, settings.kind):
        return _load(target, key, settings)
    n_chars = sum(len(text) for text in texts)
    print(f"[tokenizer] training {settings.kind} ({settings.vocab_size}) on {n_chars:,} characters ...",
          end="", flush=True)
    started = time.perf_counter()
    tokenizer = train_tokenizer(texts, settings)
    spelling = SpellingModel.fit(texts) if settings.kind in KINDS_WITH_UNKNOWN else None
    trained_s = time.perf_counter() - started
    print(f" {trained_s:.1f} s", flush=True)
    record = TokenizerRecord(key, str(target), settings.kind, len(tokenizer), trained_s, False)
    trained = TrainedTokenizer(tokenizer, spelling, record)
    _write_atomically(target, trained, settings)
    return trained
