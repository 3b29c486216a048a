"""Thread settings: a server worker takes its share of the cores, not all of them."""
from __future__ import annotations

import pytest

from pipelines import runtime


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(runtime, "available_cores", lambda: 4)
    monkeypatch.delenv("ADAPTLAB_THREADS", raising=False)
    monkeypatch.delenv("MLFLOW_MODELS_WORKERS", raising=False)
    return monkeypatch


def test_server_workers_split_the_cores_between_them(four_cores):
    assert runtime.serving_threads() == 4
    four_cores.setenv("MLFLOW_MODELS_WORKERS", "2")
    assert runtime.serving_threads() == 2
    four_cores.setenv("MLFLOW_MODELS_WORKERS", "8")
    assert runtime.serving_threads() == 1


def test_an_explicit_thread_count_wins(four_cores):
    four_cores.setenv("MLFLOW_MODELS_WORKERS", "2")
    four_cores.setenv("ADAPTLAB_THREADS", "3")
    assert runtime.serving_threads() == 3


def test_a_worker_started_by_a_multi_worker_server_without_the_env_var_warns(four_cores, caplog):
    four_cores.setattr(runtime.multiprocessing, "parent_process", lambda: object())
    assert runtime.serving_threads() == 4
    assert "MLFLOW_MODELS_WORKERS is not set" in caplog.text
