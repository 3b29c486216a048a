import math

import optuna
import pytest

from pipelines.config import parse_spec
from pipelines.errors import PlatformError
from pipelines.config import trial_spec
from pipelines.hpo_config import CategoricalParam, FloatParam, IntParam, MedianPrunerSettings

SPACE = {
    "methods.0.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    "methods.0.r": {"type": "int", "low": 4, "high": 32, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [4, 8]},
    "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2},
}


def spec_data(hpo=None, **overrides):
    data = {"name": "t", "datasets": [{"name": "d", "train": "x.jsonl"}], "methods": [{"name": "lora"}],
            "train": {"eval_every_steps": 4}, "hpo": {"space": SPACE, **(hpo or {})}}
    data.update(overrides)
    return data


def test_the_section_is_typed_with_working_defaults():
    hpo = parse_spec(spec_data()).hpo
    assert (hpo.n_trials, hpo.metric, hpo.direction, hpo.pruner.type, hpo.sampler_seed) == (20, "rougeL", "maximize",
                                                                                            "none", 0)
    assert isinstance(hpo.space["methods.0.learning_rate"], FloatParam) and hpo.space["methods.0.learning_rate"].log
    assert isinstance(hpo.space["methods.0.r"], IntParam)
    assert hpo.space["train.batch_size"].choices == [4, 8]
    assert parse_spec({k: v for k, v in spec_data().items() if k != "hpo"}).hpo is None


@pytest.mark.parametrize(
    "pruner, expected",
    [("median", optuna.pruners.MedianPruner), ("hyperband", optuna.pruners.HyperbandPruner),
     ("none", optuna.pruners.NopPruner), ({"type": "median", "n_startup_trials": 1, "n_warmup_steps": 8},
                                          optuna.pruners.MedianPruner)],
)
def test_pruners_by_name_or_with_settings(pruner, expected):
    hpo = parse_spec(spec_data({"pruner": pruner})).hpo
    assert isinstance(hpo.pruner.build(), expected)
    if isinstance(pruner, dict):
        assert hpo.pruner == MedianPrunerSettings(n_startup_trials=1, n_warmup_steps=8)


def test_sampled_values_stay_inside_the_declared_distributions():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = {"lr": FloatParam(type="float", low=1e-4, high=3e-3, log=True),
              "r": IntParam(type="int", low=4, high=32, step=4),
              "bs": CategoricalParam(type="categorical", choices=[4, 8])}
    for _ in range(30):
        trial = study.ask()
        lr, r, bs = (params[k].suggest(trial, k) for k in ("lr", "r", "bs"))
        assert 1e-4 <= lr <= 3e-3 and r in range(4, 33, 4) and bs in (4, 8)
        study.tell(trial, 0.0)
    lrs = [t.params["lr"] for t in study.trials]
    assert min(lrs) < math.sqrt(1e-4 * 3e-3) < max(lrs)  # spread on the log scale, not bunched at the top


def test_a_trial_spec_sets_the_values_and_is_validated_again():
    spec = parse_spec(spec_data())
    trial = trial_spec(spec, {"methods.0.r": 16, "train.batch_size": 4, "methods.0.learning_rate": 5e-4}, "s.yaml")
    assert (trial.methods[0].r, trial.train.batch_size, trial.methods[0].learning_rate) == (16, 4, 5e-4)
    assert trial.hpo is None and trial.methods[0].alpha == spec.methods[0].alpha
    assert (spec.methods[0].r, spec.train.batch_size) == (8, 8)  # the base spec is untouched
    with pytest.raises(PlatformError, match=r"methods.0.r: Input should be greater than or equal to 1"):
        trial_spec(spec, {"methods.0.r": 0}, "s.yaml")


@pytest.mark.parametrize(
    "hpo, overrides, expected",
    [
        ({"space": {}}, {}, "hpo.space: Dictionary should have at least 1 item"),
        ({"space": {"methods.0.rank": {"type": "int", "low": 1, "high": 4}}}, {},
         "hpo.space.methods.0.rank: no field 'rank' in methods.0 (fields: "),
        ({"space": {"methods.2.r": {"type": "int", "low": 1, "high": 4}}}, {},
         "hpo.space.methods.2.r: methods is a list of 1; '2' is not an index in it"),
        ({"space": {"methods.0.r": {"type": "int", "low": 8, "high": 4}}}, {},
         "hpo.space.methods.0.r: Value error, low (8) is greater than high (4)"),
        ({"space": {"methods.0.learning_rate": {"type": "float", "low": 0.0, "high": 1e-2, "log": True}}}, {},
         "hpo.space.methods.0.learning_rate: Value error, log scale needs low > 0"),
        ({"space": {"methods.0.r": {"type": "gauss", "low": 1, "high": 4}}}, {},
         "hpo.space.methods.0.r: Input tag 'gauss' found using 'type' does not match"),
        ({"space": {"train.batch_size": {"type": "categorical", "choices": []}}}, {},
         "hpo.space.train.batch_size.choices: List should have at least 1 item"),
        ({"space": {"methods.0.r": {"type": "int", "low": 0, "high": 4}}}, {},
         "hpo.space.methods.0.r: the spec refuses 0 (methods.0.r: Input should be greater than or equal to 1)"),
        ({"space": {"train.batch_size": {"type": "float", "low": 4, "high": 8}}}, {},
         "hpo.space.train.batch_size: the spec refuses 5.33"),
        ({"pruner": "medain"}, {}, "hpo.pruner: Input tag 'medain' found using 'type'"),
        ({"pruner": "median"}, {"train": {}}, "hpo.pruner: median needs train.eval_every_steps"),
        ({"pruner": "hyperband", "metric": "eval_loss", "direction": "minimize"}, {},
         "hpo.metric: the pruner reads 'eval_loss' at each validation"),
        ({"direction": "up"}, {}, "hpo.direction: Input should be 'maximize' or 'minimize'"),
        ({}, {"methods": [{"name": "base"}, {"name": "lora"}]},
         "hpo: a study tunes one cell, but the spec has 2 methods"),
    ],
)
def test_bad_sections_fail_at_load_with_the_key_path(hpo, overrides, expected):
    with pytest.raises(PlatformError) as err:
        parse_spec(spec_data(hpo, **overrides), "bad.yaml")
    message = str(err.value)
    assert message.startswith("invalid experiment spec bad.yaml: ") and expected in message and "\n" not in message
