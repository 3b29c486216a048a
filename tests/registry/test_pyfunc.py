"""The servable pyfuncs as MLflow logs and loads them (registry/pyfunc.py).

Logging them prints neither MLflow's CloudPickle warning nor its type-hint warning. Models logged
by earlier code (a pickled `registry.summarizer.SummarizerModel` / `registry.classifier.ClassifierModel`
with its own copy of `pipelines` and `registry`; tests/registry/fixtures) still load and answer in
a process that has imported this tree's packages (`promote`, the web page, these tests) or only
`pipelines` (`evaluate`), and run this tree's code only: none of the copy's modules is imported."""
from __future__ import annotations

import json
import os
import subprocess
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
from pipelines.tasks import TASKS
from registry.classifier import ClassifierModel
from registry.summarizer import SummarizerModel
from tests.conftest import DIALOGUES, REPO

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


def logged_as_code_like_the_old_model(model_uri: str, old_name: str, into: Path) -> None:
    """`model_uri` is a models-from-code model whose signature, input examples and config keys are
    those the pickled fixture `old_name` (logged from the same tiny settings) was logged with, plus
    the task it serves."""
    new = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(into / "new")))
    with tarfile.open(FIXTURES / f"{old_name}.tar.gz") as tar:
        tar.extractall(into, filter="data")
    old = into / old_name
    flavor = mlflow.models.Model.load(str(new)).flavors["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in flavor
    assert (new / Path(flavor["model_code_path"]).name).is_file() and (new / "code" / "registry").is_dir()
    old_model, new_model = mlflow.models.Model.load(str(old)), mlflow.models.Model.load(str(new))
    assert new_model.signature == old_model.signature
    for example in ["input_example.json", "serving_input_example.json"]:
        assert (new / example).read_text() == (old / example).read_text()
    # The config names the task now (the summarizer's did not: `evaluate` infers it from the signature).
    assert flavor["config"].keys() == old_model.flavors["python_function"]["config"].keys() | {"task"}
    assert flavor["config"]["task"] in TASKS


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


# Run in a fresh interpreter: MLflow warns about an un-hinted `predict` once per process, when the
# class is defined (at import), so only a process that has not imported the classes yet shows it.
LOG_BOTH = r'''
import json, logging, sys, warnings
from types import SimpleNamespace

messages = []


class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())


def log_ours():
    from registry.classifier import log_classifier
    from registry.summarizer import log_summarizer
    from registry.text_generator import log_text_generator

    lm, encoder = sys.argv[1:3]
    generation = SimpleNamespace(instruction="Summarize the dialogue.", max_new_tokens=3, batch_size=4)
    with mlflow.start_run():
        log_summarizer(base_source=lm, artifact_kind="none", artifact_dir=None, generation=generation,
                       max_prompt_tokens=64)
    with mlflow.start_run():
        log_classifier(base_source=encoder, artifact_kind="none", artifact_dir=None,
                       labels=["negative", "positive"], max_seq_len=32)
    with mlflow.start_run():
        log_text_generator(base_source=lm, artifact_kind="none", artifact_dir=None, max_new_tokens=3,
                           max_prompt_tokens=32)


def log_a_pickle():  # what the capture must catch
    class Bare(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="bare", python_model=Bare(), pip_requirements=["mlflow"])


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import mlflow

    logging.getLogger("mlflow").addHandler(Keep())
    result = {}
    for name, log in [("ours", log_ours), ("pickle", log_a_pickle)]:
        log()
        result[name] = messages + [str(w.message) for w in caught]
        messages.clear()
        caught.clear()
print("RESULT " + json.dumps(result))
'''
WARNINGS = {"CloudPickle": "Passing a Python object as `python_model`", "type hints": "Add type hints to the `predict`",
            "serving input example": "Failed to validate serving input example"}


def test_logging_the_servables_warns_neither_about_pickles_nor_about_type_hints(
        tmp_path, tiny_lm_dir, tiny_encoder_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "ADAPTLAB_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", LOG_BOTH, str(tiny_lm_dir), str(tiny_encoder_dir)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    found = {name: [kind for kind, text in WARNINGS.items() if any(text in m for m in messages)]
             for name, messages in result.items()}
    assert found["pickle"][:2] == ["CloudPickle", "type hints"], result["pickle"]  # the capture works
    assert found["ours"] == [], result["ours"]


EVALUATE_LOADS = r'''
import json, sys

import pandas as pd

import pipelines.evaluate  # all that `mlflow run -e evaluate` has imported when it loads the model

folder = sys.argv[1]
model = pipelines.evaluate.load_pyfunc(folder, model_config={"max_rows": 4})
out = model.predict(pd.DataFrame({"dialogue": ["A: Lunch at noon?\nB: Yes, at the cafe."]}))
print("RESULT " + json.dumps({
    "rows": len(out), "class_file": sys.modules[type(model.unwrap_python_model()).__module__].__file__,
    "from_copy": sorted(n for n, m in list(sys.modules.items()) if str(getattr(m, "__file__", None) or "").startswith(folder)),
}))
'''


def test_evaluate_runs_an_old_model_on_this_trees_code_though_it_imports_only_pipelines(tmp_path, tiny_lm_dir):
    folder = unpack_old_model("old_summarizer", tmp_path, tiny_lm_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO), "ADAPTLAB_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", EVALUATE_LOADS, str(folder)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result == {"rows": 1, "class_file": str(REPO / "registry" / "summarizer.py"), "from_copy": []}
