"""Tokenizers trained on the task's own texts: char, byte-level BPE and word level.

- `settings`: `TokenizerSettings`, the spec section (kind, vocab_size, min_frequency).
- `training`: `train_tokenizer`, and `cached_tokenizer`, the cached ETL step.
- `spelling`: `SpellingModel`, the charge for the text behind each `<unk>` token.
- `pieces`: how text is cut before the vocabulary is looked up.

Nothing is imported here, so the spec can import `settings` without loading transformers.
"""
