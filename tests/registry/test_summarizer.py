"""The summarizer pyfunc in process: logged as code with the signature it always had, request
limits from its model_config, threads per worker."""
from __future__ import annotations

from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from registry.summarizer import LIMITS, log_summarizer
from tests.conftest import DIALOGUES
from tests.registry.test_pyfunc import logged_as_code_like_the_old_model


@pytest.fixture
def logged_uri(tracking, tiny_lm_dir) -> str:
    generation = SimpleNamespace(instruction="Summarize the dialogue.", max_new_tokens=3, batch_size=4)
    with mlflow.start_run():
        info = log_summarizer(base_source=str(tiny_lm_dir), artifact_kind="none", artifact_dir=None,
                              generation=generation, max_prompt_tokens=64)
    return info.model_uri


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_it_is_logged_as_code_with_the_signature_and_example_it_had_as_a_pickle(logged_uri, tmp_path):
    logged_as_code_like_the_old_model(logged_uri, "old_summarizer", tmp_path)


def test_limits_are_logged_and_a_server_can_override_them(logged_uri, restore_threads):
    model = mlflow.pyfunc.load_model(logged_uri)
    assert model.model_config["max_rows"] == LIMITS.max_rows and model.model_config["max_chars"] == LIMITS.max_chars
    two = pd.DataFrame({"dialogue": [DIALOGUES[0][0], DIALOGUES[1][0]]})
    assert len(model.predict(two)) == 2

    # What MLFLOW_PYFUNC_INFERENCE_CONFIG does for `mlflow models serve`.
    strict = mlflow.pyfunc.load_model(logged_uri, model_config={"max_rows": 1, "max_chars": 30})
    with pytest.raises(MlflowException, match="2 rows, at most 1 per request") as caught:
        strict.predict(two)
    assert caught.value.get_http_status_code() == 400
    long = DIALOGUES[0][0]
    with pytest.raises(MlflowException, match=f"row 0: 'dialogue' has {len(long)} characters, at most 30"):
        strict.predict(pd.DataFrame({"dialogue": [long]}))
    with pytest.raises(MlflowException, match="param 'max_new_tokens' must be between 1 and 1024, got 2000"):
        model.predict(two, params={"max_new_tokens": 2000})


def test_each_server_worker_takes_its_share_of_the_cores(logged_uri, monkeypatch, restore_threads):
    from pipelines.runtime import available_cores

    monkeypatch.delenv("ADAPTLAB_THREADS", raising=False)
    monkeypatch.setenv("MLFLOW_MODELS_WORKERS", str(available_cores()))
    mlflow.pyfunc.load_model(logged_uri)
    assert torch.get_num_threads() == 1
