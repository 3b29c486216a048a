"""The sentiment web page: type a sentence, see the label and its probability as you type.

    python -m apps.webapp --model models:/sentiment-classifier@champion --port 7860
    make webapp

The page loads the registered classifier in its own process (`mlflow.pyfunc.load_model`) rather
than calling the `mlflow models serve` endpoint: one process to start, and no HTTP hop between a
keystroke and the answer. The header says which registered version answers.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from pipelines.errors import PlatformError, first_line
from pipelines.runtime import configure_threads

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline machine
PLACEHOLDER = "Type a sentence to see its sentiment."


def describe(model_uri: str) -> str:
    """'sentiment-classifier v3 (@champion, run 1a2b3c4d)' for a registry URI; the URI otherwise."""
    if not model_uri.startswith("models:/"):
        return model_uri
    name, _, ref = model_uri.removeprefix("models:/").partition("@")
    client = mlflow.MlflowClient()
    try:
        if ref:
            version = client.get_model_version_by_alias(name, ref)
            return f"{name} v{version.version} (@{ref}, run {version.run_id[:8]})"
        name, _, number = name.partition("/")
        version = client.get_model_version(name, number)
        return f"{name} v{version.version} (run {version.run_id[:8]})"
    except MlflowException as exc:
        raise PlatformError(f"model '{model_uri}' is not in the registry: {first_line(exc)}") from None


def classify_fn(model):
    """The page's callback: text -> (result line, label confidences, latency line)."""

    def classify(text: str):
        if not text or not text.strip():
            return PLACEHOLDER, None, ""
        started = time.perf_counter()
        try:
            out = model.predict(pd.DataFrame({"text": [text]}))
        except MlflowException as exc:  # the classifier's own 400s: too long, and so on
            return f"Cannot classify this input: {exc.message}", None, ""
        row = out.iloc[0]
        elapsed_ms = 1000 * (time.perf_counter() - started)
        confidences = {c.removeprefix("p_"): float(row[c]) for c in out.columns if c.startswith("p_")}
        note = " (long input: only its beginning was read)" if bool(row.get("truncated", False)) else ""
        return f"{row['label']} ({row['probability']:.2f}){note}", confidences, f"answered in {elapsed_ms:.0f} ms"

    return classify


def build_app(model, description: str):
    import gradio as gr

    classify = classify_fn(model)
    with gr.Blocks(title="Sentiment") as app:
        gr.Markdown(f"## Sentiment\nAnswering: **{description}**", elem_id="model-version")
        text = gr.Textbox(label="Sentence", placeholder="A warm, funny film.", lines=2, elem_id="text")
        result = gr.Textbox(label="Sentiment", value=PLACEHOLDER, interactive=False, elem_id="result")
        confidences = gr.Label(label="Probabilities", elem_id="confidences")
        latency = gr.Markdown(elem_id="latency")
        # Every keystroke asks; `always_last` drops stale requests so the page follows the typing.
        for event in (text.change, text.submit):
            event(classify, inputs=text, outputs=[result, confidences, latency], trigger_mode="always_last",
                  show_progress="hidden")
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webapp", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/sentiment-classifier@champion", help="model URI to answer with")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    from pipelines.tracking import setup_tracking

    setup_tracking()
    configure_threads()
    try:
        description = describe(args.model)
        print(f"[webapp] loading {description}", flush=True)
        model = mlflow.pyfunc.load_model(args.model)
    except (PlatformError, MlflowException, OSError) as exc:
        print(f"error: cannot load '{args.model}': {first_line(exc)}", file=sys.stderr)
        return 2
    build_app(model, description).launch(server_name=args.host, server_port=args.port, footer_links=[],
                                         show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
