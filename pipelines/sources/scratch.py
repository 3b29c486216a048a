"""The `scratch` model source: a decoder built from a stock transformers config, randomly
initialised, with a tokenizer trained on the train part (`pipelines/tokenizers`).

A stock config (`LlamaConfig` by default, `GPTNeoXConfig` as the other choice) rather than a
model of our own: saving, `generate()`, the FLOP count of the MFU (which counts `nn.Linear`),
the methods and the servable text generator then work as for any pretrained model. Both use
rotary positions, which need no learned table and carry no length limit of their own beyond
`context_length` (`max_position_embeddings`). The seed project's sinusoidal positions are not
offered: no stock decoder config with `nn.Linear` layers has them, and a module of our own would
buy nothing rotary does not give.

Dropout: Llama's blocks have attention dropout only (no residual or embedding dropout), so there
`dropout` is the attention dropout; GPT-NeoX applies it to attention and to both residual branches.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.tokenizers.settings import TokenizerSettings


class ScratchModel(BaseModel):
    """The shape of a model trained from scratch, and its tokenizer."""

    model_config = ConfigDict(extra="forbid")

    architecture: Literal["llama", "gpt_neox"] = Field(
        "llama", description="stock transformers config: llama (RMSNorm, gated MLP, attention dropout only) or "
        "gpt_neox (LayerNorm, GELU MLP, attention and residual dropout)")
    layers: int = Field(4, ge=1, description="transformer blocks")
    heads: int = Field(4, ge=1, description="attention heads; width must be a multiple of it")
    width: int = Field(256, ge=8, description="hidden size (the embedding width)")
    mlp_width: int | None = Field(
        None, ge=1, description="feed-forward width (default: 4 x width for gpt_neox; for llama's gated MLP "
        "8/3 x width rounded up to a multiple of 32, the same parameter count)")
    context_length: int = Field(
        256, ge=8, description="positions the model is built for (rotary); train.max_seq_len may not exceed it")
    dropout: float = Field(0.0, ge=0, lt=1, description="see the module docstring for where each architecture "
                           "applies it")
    tie_embeddings: bool = Field(True, description="share the input embedding and the output head")
    init_std: float = Field(0.02, gt=0, description="standard deviation of the initial weights")
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.width % self.heads:
            raise ValueError(f"width: {self.width} is not a multiple of heads={self.heads}")
        return self

    def feed_forward_width(self) -> int:
        if self.mlp_width is not None:
            return self.mlp_width
        if self.architecture == "gpt_neox":
            return 4 * self.width
        return 32 * math.ceil(8 * self.width / 3 / 32)


def tokenizer_logged(record) -> dict:
    """Params and artifacts the cell keeps with the run: the cache key, the kind and size, the files."""
    return {"tokenizer.cache_key": record.key, "tokenizer.kind": record.kind, "tokenizer.vocab_size": record.vocab_size,
            "tokenizer.from_cache": record.from_cache, "artifacts": {"tokenizer": record.path}}


def model_config(settings: ScratchModel, tokenizer):
    """The transformers config of `settings` for `tokenizer`'s vocabulary and special tokens."""
    from transformers import GPTNeoXConfig, LlamaConfig

    common = dict(vocab_size=len(tokenizer), hidden_size=settings.width, num_hidden_layers=settings.layers,
                  num_attention_heads=settings.heads, intermediate_size=settings.feed_forward_width(),
                  max_position_embeddings=settings.context_length, tie_word_embeddings=settings.tie_embeddings,
                  initializer_range=settings.init_std, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if settings.architecture == "gpt_neox":
        return GPTNeoXConfig(**common, rotary_pct=1.0, hidden_dropout=settings.dropout,
                             attention_dropout=settings.dropout, use_parallel_residual=False)
    return LlamaConfig(**common, num_key_value_heads=settings.heads, attention_dropout=settings.dropout)


def build_scratch_lm(settings: ScratchModel, train_texts: list[str], *, seed: int, device):
    """(model, tokenizer, TrainedTokenizer): the tokenizer trained on `train_texts` (or taken from
    its cache), the model built from its config with weights drawn from `seed`."""
    import torch
    from transformers import AutoModelForCausalLM

    from pipelines.sources.models import cache_root
    from pipelines.tokenizers.training import cached_tokenizer

    trained = cached_tokenizer(train_texts, settings.tokenizer, cache_root() / "tokenizers")
    tokenizer = trained.tokenizer
    config = model_config(settings, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    params = sum(p.numel() for p in model.parameters())
    print(f"  scratch {settings.architecture}: {settings.layers} layers x {settings.width} wide, {settings.heads} heads, "
          f"{params / 1e6:.2f}M parameters, vocabulary {len(tokenizer):,} ({settings.tokenizer.kind})", flush=True)
    return model.to(device), tokenizer, trained
