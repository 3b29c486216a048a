"""How the servable pyfuncs are logged and loaded: MLflow "models from code", not pickles.

`python_model` is the path of a model-definition file (`summarizer_model.py`, `classifier_model.py`,
`text_generator_model.py`) that MLflow copies into the model folder and runs when the model loads;
the file hands MLflow an instance of the class (`mlflow.models.set_model`). Each class lives in one
module (`registry.summarizer.SummarizerModel`, `registry.classifier.ClassifierModel`,
`registry.text_generator.TextGeneratorModel`), where models logged as pickles before find it too.
`code_paths` copies `pipelines` and `registry` into the model, so it loads in a fresh process
(`mlflow models serve`) from its folder alone.

`predict` is hinted `model_input: pd.DataFrame`: MLflow infers no signature from that hint (its
`type_hints_no_signature_inference`), so the explicit column signatures, their schema enforcement
and the 400s of registry/inputs.py stay as they were. `list[str]` or a pydantic row would make MLflow
infer and use a signature of its own (an unnamed or object column) in place of the explicit one.
"""
from __future__ import annotations

from pathlib import Path

import mlflow

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVING_PACKAGES = {"torch", "transformers", "peft", "accelerate", "mlflow", "pandas", "safetensors", "gguf", "sentencepiece",
                    "uvloop"}


def pip_requirements() -> list[str]:
    """The pinned subset of requirements.txt that serving needs (given explicitly: MLflow's
    inference would load the model once more in a subprocess)."""
    pins = []
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        pin = line.split("#")[0].strip()
        if pin and pin.split("==")[0] in SERVING_PACKAGES:
            pins.append(pin)
    return pins


def log_from_code(model_file: str, **log_model_kwargs):
    """Log the model that `registry/<model_file>` defines in the active run; returns MLflow's ModelInfo."""
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name(model_file)),
        code_paths=[str(REPO_ROOT / "pipelines"), str(REPO_ROOT / "registry")],
        pip_requirements=pip_requirements(),
        **log_model_kwargs,
    )


def load_pyfunc(model_uri: str, model_config: dict | None = None):
    """`mlflow.pyfunc.load_model` for a process that has imported only `pipelines` (evaluate):
    importing this module imports `registry` too, so the model runs this tree's code, not its own
    copy of `registry` over this tree's `pipelines` (see registry/__init__.py)."""
    return mlflow.pyfunc.load_model(model_uri, model_config=model_config)
