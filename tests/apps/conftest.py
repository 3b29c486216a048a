"""The registered models the web page's tests answer with: the sentiment champion, trained by a
tiny classification grid, and a tiny random llama logged as the text generator and registered as
`quijote-gpt@champion`, the name the from-scratch Spanish GPT will take."""
from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from pipelines import compare
from tests.pipelines.test_cell_classification import write_cls_spec
from tests.registry.test_text_generator import log as log_text_generator

GENERATOR_NAME = "quijote-gpt"


@pytest.fixture
def champion(tracking, tmp_path, tiny_encoder_dir, sentiment_files):
    spec = write_cls_spec(tmp_path, tiny_encoder_dir, sentiment_files, [{"name": "full", "learning_rate": 3e-3}],
                          registry={"model_name": "sentiment-classifier", "metric": "accuracy"})
    assert compare.main([spec]) == 0
    return MlflowClient().get_model_version_by_alias("sentiment-classifier", "champion")


@pytest.fixture
def generator_version(tracking, tiny_lm_plain_dir):
    """The tiny text generator as `quijote-gpt@champion`; its registered version."""
    version = mlflow.register_model(log_text_generator(str(tiny_lm_plain_dir)), GENERATOR_NAME)
    MlflowClient().set_registered_model_alias(GENERATOR_NAME, "champion", version.version)
    return version
