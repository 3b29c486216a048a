"""Command-line overrides of spec fields (`--set`, `-P set=...`), through the setter hpo uses too."""
from __future__ import annotations

import pytest
import yaml

from pipelines.config import load_spec
from pipelines.errors import PlatformError
from pipelines.spec_paths import parse_overrides

SPEC = {
    "name": "s", "task": "classification",
    "datasets": [{"name": "d", "train": "t.jsonl", "text_field": "text", "target_field": "label"}],
    "methods": [{"name": "full"}, {"name": "lora", "r": 8}],
}


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def test_values_parse_as_yaml_scalars_and_lists_quoted_where_they_hold_spaces():
    assert parse_overrides("train.max_steps=2 train.max_minutes=null methods.1.learning_rate=3.0e-4 "
                           "methods.1.target_modules=[q_proj,v_proj] generation.instruction='Sum it up.'") == {
        "train.max_steps": 2, "train.max_minutes": None, "methods.1.learning_rate": 3.0e-4,
        "methods.1.target_modules": ["q_proj", "v_proj"], "generation.instruction": "Sum it up."}
    assert parse_overrides(["a=1", "b=x c=2"]) == {"a": 1, "b": "x", "c": 2}
    assert parse_overrides("") == {} and parse_overrides(None) == {}


def test_overrides_set_fields_the_yaml_leaves_at_their_default_and_keep_the_rest(spec_file):
    spec = load_spec(spec_file, parse_overrides("train.max_steps=2 eval.max_examples=3 methods.1.r=4 "
                                                "models.0.source=/tmp/m"))
    assert (spec.train.max_steps, spec.eval.max_examples, spec.methods[1].r) == (2, 3, 4)
    assert spec.models[0].source == "/tmp/m" and spec.models[0].name == "smollm2"
    # A default the task patches stays a default: classification still selects on accuracy.
    assert spec.train.select_metric == "accuracy"
    assert spec.registry.model_name == load_spec(spec_file).registry.model_name


@pytest.mark.parametrize("override, message", [
    ("train.max_stepz=2", "train.max_stepz: no field 'max_stepz' in train (fields: epochs, max_steps,"),
    ("methods.5.r=2", "methods.5.r: methods is a list of 2; '5' is not an index in it"),
    ("train.max_steps=two", "train.max_steps: Input should be a valid integer"),
    ("methods.1.r=0", "methods.1.r: Input should be greater than or equal to 1"),
])
def test_an_unknown_key_or_a_bad_value_fails_with_its_key_path(spec_file, override, message):
    with pytest.raises(PlatformError) as info:
        load_spec(spec_file, parse_overrides(override))
    assert str(info.value).startswith(f"invalid experiment spec {spec_file} with --set: {message}")


def test_a_word_without_a_value_is_refused():
    with pytest.raises(PlatformError, match="override 'train.max_steps': use key.path=value"):
        parse_overrides("train.max_steps")
