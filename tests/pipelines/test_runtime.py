"""Thread settings and precision: a server worker takes its share of the cores; bf16 where the CPU is fast at it."""
from __future__ import annotations

import re

import pytest
import torch

from pipelines import runtime
from pipelines.runtime import autocast_dtype, cpu_has_fast_bf16

CPU = torch.device("cpu")


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


def test_bf16_hardware_is_detected_but_auto_precision_stays_float32_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True, "avx512_bf16": True})
    assert cpu_has_fast_bf16() and autocast_dtype("auto", CPU) is None
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False, "avx512_bf16": True})
    assert cpu_has_fast_bf16() and autocast_dtype("auto", CPU) is None  # Zen 4: 1.5x float32 measured
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False, "avx512_bf16": False})
    assert not cpu_has_fast_bf16() and autocast_dtype("auto", CPU) is None


def test_explicit_precision_wins_over_the_hardware(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
    assert autocast_dtype("float32", CPU) is None
    monkeypatch.setattr(torch.cpu, "get_capabilities", dict)
    assert autocast_dtype("bfloat16", CPU) == torch.bfloat16


@pytest.mark.parametrize("setting, message", [
    ("cuda", "train.device: 'cuda' is not available on this machine (it has cpu); use auto or cpu"),
    ("mps", "train.device: 'mps' is not available on this machine"),
    ("gpu", "train.device: 'gpu' is not a device name; use auto, cpu, cuda, cuda:N or mps"),
])
def test_a_device_the_machine_lacks_fails_in_one_line(setting, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(runtime.PlatformError, match=re.escape(message)):
        runtime.check_device(setting, "train.device")
    assert runtime.check_device("cpu") == CPU and runtime.check_device("auto") == CPU


def test_a_cuda_index_past_the_devices_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(runtime.PlatformError, match=r"'cuda:3' does not exist here \(1 cuda device\(s\): cuda:0 to cuda:0\)"):
        runtime.check_device("cuda:3")
    assert runtime.check_device("cuda:0") == torch.device("cuda:0")


def test_the_grid_checks_the_device_before_reading_any_data(monkeypatch):
    from pipelines import preflight

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = type("Spec", (), {"train": type("Train", (), {"device": "cuda"})(), "task": "summarization"})()
    monkeypatch.setattr(preflight, "get_task", lambda name: pytest.fail("data read before the device was checked"))
    with pytest.raises(runtime.PlatformError, match="train.device: 'cuda' is not available"):
        preflight.resolve_inputs(spec)
