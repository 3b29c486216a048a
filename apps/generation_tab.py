"""The Text generation tab: a prompt, the length and temperature of its continuation, a seed,
and the continuation with how long it took.

Answered by a registered text generator (`registry/text_generator.py`): a `prompt` column in,
`continuation` and `truncated` out, params `max_new_tokens`, `temperature` (0: greedy) and `seed`.
The model's own checks (too long a prompt, a temperature it refuses, ...) answer as one line.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
from mlflow.exceptions import MlflowException

from pipelines.errors import first_line
from registry.text_generator import INPUT_COLUMN

LABEL = "Text generation"
PROMPT_PLACEHOLDER = "En un lugar de la Mancha"
EMPTY_PROMPT = "Type a prompt to continue."
MAX_NEW_TOKENS, DEFAULT_NEW_TOKENS = 256, 64  # a longer continuation would keep the page waiting on a CPU
MAX_TEMPERATURE = 2.0


def token_counter(model) -> Callable[[str], int] | None:
    """Counts a continuation's tokens with the served model's tokenizer (the pyfunc returns text
    only), or None when the model has no tokenizer to ask. Re-encoding the decoded text can merge
    tokens differently from the generated ids; close enough for a tokens/s figure."""
    try:
        tokenizer = model.unwrap_python_model().tokenizer
    except (AttributeError, MlflowException):
        return None
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def latency_line(elapsed_ms: float, tokens: int | None, truncated: bool) -> str:
    if tokens is None:
        line = f"answered in {elapsed_ms:.0f} ms"
    elif tokens == 0:
        line = f"answered in {elapsed_ms:.0f} ms: the model ended the text at once"
    else:
        line = f"{tokens} tokens in {elapsed_ms:.0f} ms ({1000 * tokens / elapsed_ms:.1f} tokens/s)"
    return line + (" (long prompt: only its end was read)" if truncated else "")


def generate_fn(model, count_tokens: Callable[[str], int] | None = None):
    """The tab's callback: (prompt, max new tokens, temperature, seed) -> (continuation, latency line)."""

    def generate(prompt: str, max_new_tokens: float, temperature: float, seed: float | None):
        if not prompt or not prompt.strip():
            return EMPTY_PROMPT, ""
        # An emptied seed box means the default seed; it changes nothing when decoding greedily.
        params = {"max_new_tokens": int(max_new_tokens), "temperature": float(temperature),
                  "seed": int(seed) if seed is not None else 0}
        started = time.perf_counter()
        try:
            out = model.predict(pd.DataFrame({INPUT_COLUMN: [prompt]}), params=params)
        except MlflowException as exc:  # the generator's own 400s: prompt too long, temperature refused, ...
            return f"Cannot generate from this input: {first_line(exc)}", ""
        elapsed_ms = 1000 * (time.perf_counter() - started)
        row = out.iloc[0]
        continuation = str(row["continuation"])
        tokens = count_tokens(continuation) if count_tokens else None
        return continuation, latency_line(elapsed_ms, tokens, bool(row.get("truncated", False)))

    return generate


def build(model, description: str) -> None:
    """The tab's elements and events, inside the caller's `gr.Tab`."""
    import gradio as gr

    generate = generate_fn(model, token_counter(model))
    gr.Markdown(f"## Text generation\nAnswering: **{description}**", elem_id="generator-model-version")
    prompt = gr.Textbox(label="Prompt", placeholder=PROMPT_PLACEHOLDER, lines=3, elem_id="prompt")
    with gr.Row():
        max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_NEW_TOKENS, step=1, label="Max new tokens",
                                   elem_id="max-new-tokens")
        temperature = gr.Slider(0, MAX_TEMPERATURE, value=0, step=0.05, label="Temperature (0: greedy)",
                                elem_id="temperature")
        # No bounds here: the model's own check answers a bad seed in the output, as for any other input.
        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
    button = gr.Button("Generate", variant="primary", elem_id="generate")
    continuation = gr.Textbox(label="Continuation", lines=6, interactive=False, elem_id="continuation")
    latency = gr.Markdown(elem_id="generation-latency")
    # In a multi-line box Gradio submits on Shift+Enter; Enter starts a new line of the prompt.
    for event in (button.click, prompt.submit):
        event(generate, inputs=[prompt, max_new_tokens, temperature, seed], outputs=[continuation, latency])
