"""The Sentiment tab: type a sentence, see the label and its probability as you type.

Answered by a registered classifier (`registry/classifier.py`): a `text` column in; `label`,
`probability`, `truncated` and one `p_<label>` column per class out.
"""
from __future__ import annotations

import time

import pandas as pd
from mlflow.exceptions import MlflowException

from registry.classifier import INPUT_COLUMN

LABEL = "Sentiment"
PLACEHOLDER = "Type a sentence to see its sentiment."


def classify_fn(model):
    """The tab's callback: text -> (result line, label confidences, latency line)."""

    def classify(text: str):
        if not text or not text.strip():
            return PLACEHOLDER, None, ""
        started = time.perf_counter()
        try:
            out = model.predict(pd.DataFrame({INPUT_COLUMN: [text]}))
        except MlflowException as exc:  # the classifier's own 400s: too long, and so on
            return f"Cannot classify this input: {exc.message}", None, ""
        row = out.iloc[0]
        elapsed_ms = 1000 * (time.perf_counter() - started)
        confidences = {c.removeprefix("p_"): float(row[c]) for c in out.columns if c.startswith("p_")}
        note = " (long input: only its beginning was read)" if bool(row.get("truncated", False)) else ""
        return f"{row['label']} ({row['probability']:.2f}){note}", confidences, f"answered in {elapsed_ms:.0f} ms"

    return classify


def build(model, description: str) -> None:
    """The tab's elements and events, inside the caller's `gr.Tab`."""
    import gradio as gr

    classify = classify_fn(model)
    gr.Markdown(f"## Sentiment\nAnswering: **{description}**", elem_id="model-version")
    text = gr.Textbox(label="Sentence", placeholder="A warm, funny film.", lines=2, elem_id="text")
    result = gr.Textbox(label="Sentiment", value=PLACEHOLDER, interactive=False, elem_id="result")
    confidences = gr.Label(label="Probabilities", elem_id="confidences")
    latency = gr.Markdown(elem_id="latency")
    # Every keystroke asks; `always_last` drops stale requests so the page follows the typing.
    for event in (text.change, text.submit):
        event(classify, inputs=text, outputs=[result, confidences, latency], trigger_mode="always_last",
              show_progress="hidden")
