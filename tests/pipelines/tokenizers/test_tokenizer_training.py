"""Tokenizers trained here on small Spanish texts: the three kinds, their offsets, their round
trip through save_pretrained, and the cache."""
from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from pipelines.tokenizers import training
from pipelines.tokenizers.settings import SPECIAL_TOKENS, TokenizerSettings
from pipelines.tokenizers.training import cache_key, cached_tokenizer, train_tokenizer

TEXTS = [
    "En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo\n",
    "que vivía un hidalgo de los de lanza en astillero, adarga antigua, rocín flaco y galgo corredor.\n",
    "Una olla de algo más vaca que carnero, salpicón las más noches, duelos y quebrantos los sábados.",
] * 3
ACCENTED = "El señor vivía en la Mancha; ¿rocín? sábado."
SIZES = {"char": 200, "word": 200, "bpe": 300}


def settings(kind: str, **overrides) -> TokenizerSettings:
    return TokenizerSettings(kind=kind, vocab_size=overrides.pop("vocab_size", SIZES[kind]), **overrides)


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, PreTrainedTokenizerFast]:
    return {kind: train_tokenizer(TEXTS, settings(kind)) for kind in SIZES}


@pytest.mark.parametrize("kind", SIZES)
def test_special_tokens_are_ids_0_to_3(tokenizers, kind):
    tokenizer = tokenizers[kind]
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == list(SPECIAL_TOKENS)
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (
        0, 1, 2, 3)


@pytest.mark.parametrize("kind", SIZES)
def test_no_special_token_is_added(tokenizers, kind):
    tokenizer = tokenizers[kind]
    plain = tokenizer(ACCENTED, add_special_tokens=False)["input_ids"]
    assert tokenizer(ACCENTED)["input_ids"] == plain
    assert not {0, 2, 3} & set(plain)


def byte_level_bytes() -> dict[str, int]:
    """GPT-2's byte-level alphabet, printable character -> byte, to read what a BPE token holds."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(others)}}


@pytest.mark.parametrize("kind", ["char", "word"])
def test_offsets_cut_the_original_text_into_its_tokens(tokenizers, kind):
    offsets = tokenizers[kind](ACCENTED, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert "".join(ACCENTED[a:b] for a, b in offsets) == ACCENTED and offsets[-1][1] == len(ACCENTED)
    if kind == "char":
        assert offsets == [(i, i + 1) for i in range(len(ACCENTED))]


def test_bpe_offsets_are_the_characters_each_tokens_bytes_come_from(tokenizers):
    tokenizer, to_byte = tokenizers["bpe"], byte_level_bytes()
    encoding = tokenizer(ACCENTED, add_special_tokens=False, return_offsets_mapping=True)
    tokens = [bytes(to_byte[c] for c in token) for token in tokenizer.convert_ids_to_tokens(encoding["input_ids"])]
    assert b"".join(tokens) == ACCENTED.encode("utf-8")
    for token, (a, b) in zip(tokens, encoding["offset_mapping"]):
        assert token in ACCENTED[a:b].encode("utf-8") and a < b
    # 'ñ', unseen in training, is two byte tokens that share that one character's span.
    n_tilde = ACCENTED.index("ñ")
    assert encoding["offset_mapping"].count((n_tilde, n_tilde + 1)) == 2


def test_char_round_trips_seen_characters_and_marks_unseen_ones_unknown(tokenizers):
    tokenizer = tokenizers["char"]
    text = "vivía un\nhidalgo, rocín"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer.tokenize("vía☃ñ") == ["v", "í", "a", "<unk>", "<unk>"]


def test_char_vocab_size_keeps_the_most_frequent_characters():
    tokenizer = train_tokenizer(["aaaa bbb cc d"], settings("char", vocab_size=7))
    assert set(tokenizer.get_vocab()) == {*SPECIAL_TOKENS, "a", "b", " "}
    assert tokenizer.tokenize("cab") == ["<unk>", "a", "b"]


def test_bpe_round_trips_any_text_without_unknown_tokens(tokenizers):
    tokenizer = tokenizers["bpe"]
    text = "Ñandú ☃ 東京\n\t¿qué tal?  "
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == text


def test_word_keeps_accented_words_whole_and_reconstructs_known_text(tokenizers):
    tokenizer = tokenizers["word"]
    assert tokenizer.tokenize("vivía un rocín") == ["vivía", " ", "un", " ", "rocín"]
    text = "de la Mancha, no quiero\n"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer.decode(tokenizer("un dragón flaco")["input_ids"]) == "un <unk> flaco"


def test_word_vocab_size_and_min_frequency_keep_the_frequent_pieces():
    texts = ["el gato y el perro y el gato, el pez."]
    small = train_tokenizer(texts, settings("word", vocab_size=7))
    assert set(small.get_vocab()) == {*SPECIAL_TOKENS, " ", "el", "gato"}  # counts 9, 4, 2 (y: 2, after gato)
    frequent = train_tokenizer(texts, settings("word", min_frequency=2))
    assert "perro" not in frequent.get_vocab() and "y" in frequent.get_vocab()


@pytest.mark.parametrize("kind", SIZES)
def test_save_pretrained_and_auto_tokenizer_round_trip(tokenizers, tmp_path, kind):
    tokenizers[kind].save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, PreTrainedTokenizerFast)
    ids = tokenizers[kind](ACCENTED)["input_ids"]
    assert loaded(ACCENTED)["input_ids"] == ids and loaded.decode(ids) == tokenizers[kind].decode(ids)
    assert loaded.convert_ids_to_tokens([0, 1, 2, 3]) == list(SPECIAL_TOKENS)


def test_cache_key_depends_on_texts_their_order_and_the_settings():
    key = cache_key(["ab", "c"], settings("word"))
    assert len(key) == 16 and key == cache_key(["ab", "c"], settings("word"))
    others = [cache_key(["a", "bc"], settings("word")), cache_key(["c", "ab"], settings("word")),
              cache_key(["ab", "c"], settings("word", vocab_size=100))]
    assert key not in others and len(set(others)) == 3


def test_cached_tokenizer_trains_once_then_loads(tmp_path, capsys):
    first = cached_tokenizer(TEXTS, settings("word"), tmp_path)
    assert "[tokenizer] training word (200) on 822 characters ..." in capsys.readouterr().out
    assert not first.record.from_cache and first.record.trained_s > 0
    again = cached_tokenizer(TEXTS, settings("word"), tmp_path)
    assert capsys.readouterr().out == "" and again.record.from_cache and again.record.trained_s == 0
    assert again.record.key == first.record.key and again.record.path == str(tmp_path / first.record.key)
    assert again.record.vocab_size == first.record.vocab_size == len(first.tokenizer)
    assert again.tokenizer(ACCENTED)["input_ids"] == first.tokenizer(ACCENTED)["input_ids"]
    assert again.spelling.nats("dragón") == first.spelling.nats("dragón")
    assert json.loads((tmp_path / first.record.key / "settings.json").read_text())["kind"] == "word"


def test_bpe_is_cached_without_a_spelling_model(tmp_path):
    trained = cached_tokenizer(TEXTS, settings("bpe"), tmp_path)
    assert trained.spelling is None and not (tmp_path / trained.record.key / "spelling.json").exists()
    assert cached_tokenizer(TEXTS, settings("bpe"), tmp_path).record.from_cache


def test_an_interrupted_write_leaves_no_cache(tmp_path, monkeypatch):
    def write_half(folder, trained, _settings):
        trained.tokenizer.save_pretrained(folder)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_write", write_half)
    with pytest.raises(KeyboardInterrupt):
        cached_tokenizer(TEXTS, settings("char"), tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert not cached_tokenizer(TEXTS, settings("char"), tmp_path).record.from_cache
    assert cached_tokenizer(TEXTS, settings("char"), tmp_path).record.from_cache


def test_an_incomplete_cache_folder_is_retrained(tmp_path):
    folder = tmp_path / cache_key(TEXTS, settings("char"))
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{")
    trained = cached_tokenizer(TEXTS, settings("char"), tmp_path)
    assert not trained.record.from_cache and cached_tokenizer(TEXTS, settings("char"), tmp_path).record.from_cache
