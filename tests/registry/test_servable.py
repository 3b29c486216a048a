"""The servable pyfuncs as MLflow logs and loads them. Models logged by earlier code (a pickled
`registry.summarizer.SummarizerModel` / `registry.classifier.ClassifierModel` with its own copy of
`pipelines` and `registry`; tests/registry/fixtures) still load and answer in a process that has
imported this tree's packages, as `evaluate`, `promote` and the web page have, and run this tree's
code only: none of the copy's modules is imported."""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
import yaml
from mlflow.exceptions import MlflowException

import pipelines  # noqa: F401  (imported before any model loads, as in the platform's processes)
import registry  # noqa: F401
from registry.classifier import ClassifierModel
from registry.summarizer import SummarizerModel
from tests.conftest import DIALOGUES

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def isolated(monkeypatch):
    """Undo what loading a model leaves behind: its code copy first on sys.path, torch's threads."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def unpack_old_model(name: str, into: Path, base_source: Path) -> Path:
    """A fixture model, unpacked, with its base model source pointed at `base_source`."""
    with tarfile.open(FIXTURES / f"{name}.tar.gz") as tar:
        tar.extractall(into, filter="data")
    folder = into / name
    mlmodel = folder / "MLmodel"
    meta = yaml.safe_load(mlmodel.read_text())
    assert "python_model" in meta["flavors"]["python_function"], "the fixture is a pickled PythonModel"
    meta["flavors"]["python_function"]["config"]["base_source"] = str(base_source)
    mlmodel.write_text(yaml.safe_dump(meta, sort_keys=False))
    return folder


def modules_from(folder: Path) -> list[str]:
    return sorted(name for name, module in list(sys.modules.items())
                  if str(getattr(module, "__file__", None) or "").startswith(str(folder)))


def test_a_summarizer_logged_as_a_pickle_loads_and_answers_with_this_trees_code(tmp_path, tiny_lm_dir, isolated):
    folder = unpack_old_model("old_summarizer", tmp_path, tiny_lm_dir)
    model = mlflow.pyfunc.load_model(str(folder))
    assert type(model.unwrap_python_model()) is SummarizerModel
    two = pd.DataFrame({"dialogue": [DIALOGUES[0][0], DIALOGUES[1][0]]})
    out = model.predict(two, params={"max_new_tokens": 2})
    assert list(out.columns) == ["summary"] and len(out) == 2 and all(isinstance(s, str) for s in out["summary"])
    with pytest.raises(MlflowException, match="row 0: 'dialogue' is empty"):
        model.predict(pd.DataFrame({"dialogue": [" "]}))
    # What `evaluate` does with its own chunks, and a server with MLFLOW_PYFUNC_INFERENCE_CONFIG.
    strict = mlflow.pyfunc.load_model(str(folder), model_config={"max_rows": 1})
    with pytest.raises(MlflowException, match="2 rows, at most 1 per request"):
        strict.predict(two)
    assert modules_from(folder) == []


def test_a_classifier_logged_as_a_pickle_loads_and_answers_with_this_trees_code(tmp_path, tiny_encoder_dir, isolated):
    folder = unpack_old_model("old_classifier", tmp_path, tiny_encoder_dir)
    model = mlflow.pyfunc.load_model(str(folder))
    assert type(model.unwrap_python_model()) is ClassifierModel
    out = model.predict(pd.DataFrame({"text": ["a great film", "an awful plot"]}))
    assert list(out.columns) == ["label", "probability", "truncated", "p_negative", "p_positive"]
    assert set(out["label"]) <= {"negative", "positive"}
    assert (out["p_negative"] + out["p_positive"]).tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(MlflowException, match="row 0: 'text' must be a string, got null"):
        model.predict(pd.DataFrame({"text": [None]}))
    assert modules_from(folder) == []
