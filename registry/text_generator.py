"""The servable text generator of the `language_modeling` task: an MLflow pyfunc that rebuilds its
model offline and continues plain-text prompts.

A `prompt` column in; the `continuation` and whether the prompt was `truncated` out. The prompt is
continued as plain text, with no chat template and no special tokens added: the task trains on
plain text tokenized that way (`pipelines/tasks/language_modeling.py`). Like the summarizer it
stores only what the method changed (nothing, the adapter, or full weights) and resolves the base
model from its source when it loads.

Params: `max_new_tokens`; `temperature`, 0 (the default) for greedy decoding, 0.01 to 5 to sample
from the whole distribution at that temperature (no top-k or top-p cut); `seed`, which makes a
sampled continuation repeatable: the same prompt, params and seed give the same continuation,
whatever else the request or the worker's queue holds. Two rows with the same prompt in one
request therefore get the same continuation; vary the seed for variety.

A prompt longer than its budget in tokens is cut, keeping its end (the text to continue), and
its row says `truncated`. The budget is the logged `max_prompt_tokens`, at most the model's
context (`max_position_embeddings`) less the `max_new_tokens` of the request.
"""
from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from registry.adapters import load_served_lm
from registry.batching import MicroBatcher
from registry.inputs import RequestLimits, bad_request, float_param, int_param, texts_from_input
from registry.pyfunc import log_from_code

INPUT_COLUMN = "prompt"
OUTPUT_COLUMNS = ["continuation", "truncated"]
# Generation is costly per row: a full request must finish inside the server's request timeout
# (`mlflow models serve --timeout`, 60 s by default) or the client gets a 504.
LIMITS = RequestLimits(max_rows=16, max_chars=50_000)
MAX_NEW_TOKENS = 1024
MAX_TEMPERATURE = 5.0  # beyond any useful setting; keeps slips (50 for 0.5) out
# Sampling divides the logits by the temperature: close to 0 they overflow (1e-45 made generate
# fail on NaN probabilities, a 500). At 0.01 sampling is all but greedy already.
MIN_TEMPERATURE = 0.01
MAX_SEED = 2**32 - 1
BATCH_SIZE = 8  # greedy rows per generate call
EXAMPLE_PROMPT = "En un lugar de la Mancha, de cuyo nombre no quiero acordarme,"


def signature(max_new_tokens: int) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([ColSpec("string", INPUT_COLUMN)]),
        outputs=Schema([ColSpec("string", "continuation"), ColSpec("boolean", "truncated")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", max_new_tokens),
                            ParamSpec("temperature", "double", 0.0), ParamSpec("seed", "long", 0)]),
    )


def sample_ids(model, tokenizer, prompt: list[int], max_new_tokens: int, temperature: float, seed: int) -> list[int]:
    """New token ids for one prompt, sampled at `temperature` from the whole distribution; the
    same arguments give the same ids. The caller's random state is left as it was."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # fork_rng restores the CPU generator afterwards; on an accelerator its generator stays seeded.
    with torch.inference_mode(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generated = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=True,
            temperature=temperature, top_k=0, top_p=1.0, pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
        )
    new = generated[0, len(prompt):].tolist()
    return new[: new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new


class TextGeneratorModel(mlflow.pyfunc.PythonModel):
    """Logged from text_generator_model.py, which names this class: keep its name, module,
    `load_context` and `predict` compatible with the model configs already logged."""

    def load_context(self, context):
        cfg = context.model_config
        self.model, self.tokenizer = load_served_lm(context)
        self.cfg = cfg
        # GPT-2-style configs answer to this name too (transformers' attribute_map).
        self.context_tokens = getattr(self.model.config, "max_position_embeddings", None)
        # At least one prompt token must fit beside the new ones.
        self.max_new_limit = min(MAX_NEW_TOKENS, self.context_tokens - 1) if self.context_tokens else MAX_NEW_TOKENS
        self.limits = LIMITS.updated_from(cfg)
        # One generation at a time per worker; requests that queue meanwhile share the next one.
        self.batcher = MicroBatcher(self._generate, max_rows=self.limits.max_rows)

    def prompt_budget(self, max_new_tokens: int) -> int:
        budget = int(self.cfg["max_prompt_tokens"])
        return min(budget, self.context_tokens - max_new_tokens) if self.context_tokens else budget

    def _generate(self, prompts: list[str], key: tuple[int, float, int]) -> list[dict]:
        from pipelines.generation import generate_ids

        max_new, temperature, seed = key
        budget = self.prompt_budget(max_new)
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        kept = [ids[-budget:] for ids in encoded]
        if temperature == 0:
            generated = generate_ids(self.model, self.tokenizer, kept, max_new,
                                     batch_size=int(self.cfg.get("batch_size", BATCH_SIZE)))
        else:
            # One row at a time: in a batch the rows share the random stream and their padding,
            # so a row's continuation would depend on which other rows (other requests, joined by
            # the micro-batcher) ran beside it, and the seed would no longer pin it down.
            generated = [sample_ids(self.model, self.tokenizer, ids, max_new, temperature, seed) for ids in kept]
        return [{"continuation": self.tokenizer.decode(ids, skip_special_tokens=True), "truncated": len(full) > budget}
                for ids, full in zip(generated, encoded)]

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        prompts = texts_from_input(model_input, INPUT_COLUMN, self.limits)
        max_new = int_param(params, "max_new_tokens", int(self.cfg["max_new_tokens"]), 1, self.max_new_limit)
        temperature = float_param(params, "temperature", 0.0, 0.0, MAX_TEMPERATURE)
        if 0 < temperature < MIN_TEMPERATURE:
            raise bad_request(f"param 'temperature' must be 0 (greedy) or at least {MIN_TEMPERATURE:g} to sample, "
                              f"got {temperature!r}")
        seed = int_param(params, "seed", 0, 0, MAX_SEED)
        # Greedy requests batch together whatever seed they name: it does not change them.
        key = (max_new, temperature, seed if temperature > 0 else 0)
        return pd.DataFrame(self.batcher.submit(prompts, key=key), columns=OUTPUT_COLUMNS)


def log_text_generator(*, base_source: str, artifact_kind: str, artifact_dir: str | None, max_new_tokens: int,
                       max_prompt_tokens: int, step: int = 0, params: dict | None = None):
    """Log the servable text generator in the active run, as the LoggedModel of training step
    `step` with `params`; returns MLflow's ModelInfo."""
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {max_new_tokens}")
    if max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be at least 1, got {max_prompt_tokens}")
    config = {
        "base_source": base_source,
        "max_new_tokens": max_new_tokens,
        "max_prompt_tokens": max_prompt_tokens,
        "batch_size": BATCH_SIZE,
        "task": "language_modeling",
        **LIMITS.as_config(),
    }
    return log_from_code(
        "text_generator_model.py",
        artifacts={artifact_kind: artifact_dir} if artifact_kind != "none" else {},
        model_config=config,
        signature=signature(max_new_tokens),
        input_example=pd.DataFrame({INPUT_COLUMN: [EXAMPLE_PROMPT]}),
        step=step,
        params=params,
    )
