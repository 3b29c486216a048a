"""The web page: one Gradio app with a tab per served task, each answered by a registered model.

    python -m apps.webapp --sentiment models:/sentiment-classifier@champion \
        --generator models:/quijote-gpt@champion --port 7860
    make webapp GENERATOR=models:/quijote-generator@champion

Each flag is optional, at least one is needed, and a tab is shown per model given (`--model` is
the old name of `--sentiment`). The page loads each model in its own process
(`mlflow.pyfunc.load_model`) rather than calling a `mlflow models serve` endpoint: one process to
start, and no HTTP hop between a keystroke and the answer. Each tab's header says which
registered version answers.
"""
from __future__ import annotations

import argparse
import os
import sys

import mlflow
from mlflow.exceptions import MlflowException

from apps import generation_tab, sentiment_tab
from pipelines.errors import PlatformError, first_line
from pipelines.runtime import configure_threads

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline machine
# Command-line flag -> the tab it fills; a tab module has LABEL, INPUT_COLUMN and build(model, description).
TABS = {"sentiment": sentiment_tab, "generator": generation_tab}


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


def load_for_tab(model_uri: str, tab):
    """The loaded pyfunc for `tab`, refused when its signature takes another column than the tab
    sends (a classifier given to the generation tab would answer every request with a 400)."""
    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_input_schema()
    columns = schema.input_names() if schema else []
    if columns and tab.INPUT_COLUMN not in columns:
        raise PlatformError(f"it takes {columns}, but the {tab.LABEL} tab sends a '{tab.INPUT_COLUMN}' column")
    return model


def build_app(answering: dict[str, tuple[object, str]]):
    """The Blocks page: one tab per flag in `answering` (flag -> (loaded model, its description))."""
    import gradio as gr

    with gr.Blocks(title=" / ".join(TABS[flag].LABEL for flag in answering)) as app, gr.Tabs():
        for flag, (model, description) in answering.items():
            with gr.Tab(TABS[flag].LABEL, id=flag, elem_id=f"tab-{flag}"):
                TABS[flag].build(model, description)
    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="webapp", description=__doc__.splitlines()[0])
    parser.add_argument("--sentiment", "--model", dest="sentiment", metavar="URI",
                        help="classifier for the Sentiment tab, e.g. models:/sentiment-classifier@champion "
                             "(--model is its old name)")
    parser.add_argument("--generator", metavar="URI",
                        help="text generator for the Text generation tab, e.g. models:/quijote-gpt@champion")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    if not any(getattr(args, flag) for flag in TABS):
        parser.error("give at least one model: " + ", ".join(f"--{flag} URI" for flag in TABS))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipelines.tracking import setup_tracking

    setup_tracking()
    configure_threads()
    uris = {flag: getattr(args, flag) for flag in TABS if getattr(args, flag)}
    descriptions, answering = {}, {}
    try:
        # Every URI is looked up in the registry before any model loads: a typo fails in a second.
        for flag, model_uri in uris.items():
            descriptions[flag] = describe(model_uri)
        for flag, model_uri in uris.items():
            print(f"[webapp] loading {descriptions[flag]} for the {TABS[flag].LABEL} tab", flush=True)
            answering[flag] = (load_for_tab(model_uri, TABS[flag]), descriptions[flag])
    except (PlatformError, MlflowException, OSError) as exc:
        print(f"error: cannot load '{model_uri}': {first_line(exc)}", file=sys.stderr)
        return 2
    build_app(answering).launch(server_name=args.host, server_port=args.port, footer_links=[], show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
