"""The text generator pyfunc (registry/text_generator.py) on the tiny random llama with no chat
template: greedy continuations are `generate_ids` on the plain prompt, sampled ones repeat with
their seed, over-long prompts are cut keeping their end and flagged, bad params and rows get 400s,
an adapter or full weights rebuild the model, and logging it warns about nothing. One slow test
serves it with `mlflow models serve`."""
from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from pipelines.generation import generate_ids
from pipelines.sources.models import load_lm
from registry.servables import SERVABLES
from registry.text_generator import EXAMPLE_PROMPT, LIMITS, log_text_generator
from tests.conftest import DIALOGUES
from tests.registry.test_pyfunc import isolated  # noqa: F401  (a fixture)

MAX_NEW, MAX_PROMPT = 4, 64
CONTEXT = 512  # the tiny llama's max_position_embeddings
PROMPTS = [EXAMPLE_PROMPT, DIALOGUES[0][0]]


def log(base_source: str, artifact_kind: str = "none", artifact_dir: str | None = None) -> str:
    with mlflow.start_run():
        info = SERVABLES["text_generator"](base_source=base_source, artifact_kind=artifact_kind,
                                           artifact_dir=artifact_dir, max_new_tokens=MAX_NEW,
                                           max_prompt_tokens=MAX_PROMPT)
    return info.model_uri


@pytest.fixture
def logged_uri(tracking, tiny_lm_plain_dir) -> str:
    return log(str(tiny_lm_plain_dir))


@pytest.fixture
def model(logged_uri, isolated):  # noqa: F811
    return mlflow.pyfunc.load_model(logged_uri)


@pytest.fixture(scope="module")
def reference(tiny_lm_plain_dir):
    """The tiny model and its tokenizer, loaded directly, and its greedy continuation of token ids."""
    lm, tokenizer, _ = load_lm(str(tiny_lm_plain_dir))

    def continue_ids(ids: list[int], max_new: int = MAX_NEW) -> str:
        return tokenizer.decode(generate_ids(lm, tokenizer, [ids], max_new, batch_size=8)[0], skip_special_tokens=True)

    return tokenizer, continue_ids


def plain_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def rejected(call) -> str:
    with pytest.raises(MlflowException) as caught:
        call()
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE" and caught.value.get_http_status_code() == 400
    return caught.value.message


def test_greedy_continues_the_plain_prompt_as_generate_ids_does(logged_uri, reference, monkeypatch,
                                                                isolated):  # noqa: F811
    from pipelines.runtime import available_cores

    tokenizer, continue_ids = reference
    assert tokenizer.chat_template is None
    monkeypatch.delenv("ADAPTLAB_THREADS", raising=False)
    monkeypatch.setenv("MLFLOW_MODELS_WORKERS", str(available_cores()))
    model = mlflow.pyfunc.load_model(logged_uri)
    assert torch.get_num_threads() == 1  # each server worker takes its share of the cores
    params = model.metadata.get_params_schema().to_dict()
    assert {p["name"]: p["default"] for p in params} == {"max_new_tokens": MAX_NEW, "temperature": 0.0, "seed": 0}
    assert {k: model.model_config[k] for k in ("max_new_tokens", "max_prompt_tokens", "task")} == {
        "max_new_tokens": MAX_NEW, "max_prompt_tokens": MAX_PROMPT, "task": "language_modeling"}
    assert (model.model_config["max_rows"], model.model_config["max_chars"]) == (LIMITS.max_rows, LIMITS.max_chars)

    out = model.predict(pd.DataFrame({"prompt": PROMPTS}))
    assert list(out.columns) == ["continuation", "truncated"] and out["truncated"].dtype == bool
    assert out["continuation"].tolist() == [continue_ids(plain_ids(tokenizer, p)) for p in PROMPTS]
    assert out["truncated"].tolist() == [False, False]
    # Deterministic, alone or beside other rows, and a seed does not change it.
    again = model.predict(pd.DataFrame({"prompt": PROMPTS[1:]}), params={"seed": 5})
    assert again["continuation"].tolist() == out["continuation"].tolist()[1:]
    shorter = model.predict(pd.DataFrame({"prompt": PROMPTS[:1]}), params={"max_new_tokens": 2})
    assert shorter["continuation"][0] == continue_ids(plain_ids(tokenizer, PROMPTS[0]), max_new=2)


def test_sampling_repeats_with_its_seed_and_leaves_the_callers_random_state(model):
    frame = pd.DataFrame({"prompt": [EXAMPLE_PROMPT]})
    sample = {"temperature": 1.5, "max_new_tokens": 8}
    state = torch.random.get_rng_state()
    first = model.predict(frame, params={**sample, "seed": 7})["continuation"][0]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert model.predict(frame, params={**sample, "seed": 7})["continuation"][0] == first
    # A row's continuation is its own: other rows of the request do not change it.
    beside = model.predict(pd.DataFrame({"prompt": [PROMPTS[1], EXAMPLE_PROMPT]}), params={**sample, "seed": 7})
    assert beside["continuation"][1] == first
    others = {model.predict(frame, params={**sample, "seed": seed})["continuation"][0] for seed in range(4)}
    greedy = model.predict(frame, params={"max_new_tokens": 8})["continuation"][0]
    assert len(others | {first, greedy}) > 1  # 8 tokens from 400 at temperature 1.5: not all alike


def test_an_over_long_prompt_is_cut_keeping_its_end_and_flagged(logged_uri, reference, monkeypatch,
                                                               isolated):  # noqa: F811
    import pipelines.generation

    tokenizer, continue_ids = reference
    long = " ".join(d for d, _ in DIALOGUES) * 4
    ids = plain_ids(tokenizer, long)
    assert MAX_PROMPT < CONTEXT < len(ids) and len(long) < LIMITS.max_chars
    seen = []  # the token ids the model is given

    def recording(model, tokenizer, prompts, *args, **kwargs):
        seen.extend(prompts)
        return generate_ids(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(pipelines.generation, "generate_ids", recording)
    model = mlflow.pyfunc.load_model(logged_uri)
    out = model.predict(pd.DataFrame({"prompt": [long, EXAMPLE_PROMPT]}))
    assert out["truncated"].tolist() == [True, False]
    assert seen == [ids[-MAX_PROMPT:], plain_ids(tokenizer, EXAMPLE_PROMPT)]
    assert out["continuation"][0] == continue_ids(ids[-MAX_PROMPT:])

    # A budget past the model's context is held to the context less the new tokens.
    seen.clear()
    roomy = mlflow.pyfunc.load_model(logged_uri, model_config={"max_prompt_tokens": 10_000})
    out = roomy.predict(pd.DataFrame({"prompt": [long]}), params={"max_new_tokens": 6})
    assert out["truncated"].tolist() == [True] and seen == [ids[-(CONTEXT - 6):]]
    assert out["continuation"][0] == continue_ids(ids[-(CONTEXT - 6):], max_new=6)
    assert "param 'max_new_tokens' must be between 1 and 511, got 512" in rejected(
        lambda: roomy.predict(pd.DataFrame({"prompt": ["Hola"]}), params={"max_new_tokens": 512}))


BAD = [  # rows, params, what the 400 says
    (["Hola"], {"temperature": -1}, "param 'temperature' must be between 0 and 5, got -1.0"),
    (["Hola"], {"temperature": 5.5}, "param 'temperature' must be between 0 and 5, got 5.5"),
    (["Hola"], {"temperature": float("nan")}, "param 'temperature' must be between 0 and 5, got nan"),
    (["Hola"], {"temperature": 1e-45}, "param 'temperature' must be 0 (greedy) or at least 0.01 to sample, got 1e-45"),
    (["Hola"], {"max_new_tokens": 0}, "param 'max_new_tokens' must be between 1 and 511, got 0"),
    (["Hola"], {"seed": -1}, "param 'seed' must be between 0 and 4294967295, got -1"),
    (["Hola"], {"temperature": "hot"}, "'temperature'"),  # MLflow's own check of the ParamSpec
    ([""], None, "row 0: 'prompt' is empty"),
    (["Hola", " \n"], None, "row 1: 'prompt' is empty"),
    (["Hola", None], None, "row 1: 'prompt' must be a string, got null"),
    (["x" * (LIMITS.max_chars + 1)], None, "row 0: 'prompt' has 50,001 characters, at most 50,000"),
    (["Hola"] * (LIMITS.max_rows + 1), None, "17 rows, at most 16 per request"),
]


def test_bad_params_and_rows_get_a_400_naming_them(model):
    for rows, params, fragment in BAD:
        message = rejected(lambda: model.predict(pd.DataFrame({"prompt": rows}), params=params))
        assert fragment in message, (rows[:2], params, message)


def test_logging_refuses_budgets_that_cannot_work(tiny_lm_plain_dir):
    for bad, fragment in [({"max_new_tokens": 0}, "max_new_tokens"), ({"max_new_tokens": 2000}, "max_new_tokens"),
                          ({"max_prompt_tokens": 0}, "max_prompt_tokens")]:
        kwargs = {"max_new_tokens": MAX_NEW, "max_prompt_tokens": MAX_PROMPT, **bad}
        with pytest.raises(ValueError, match=fragment):  # before any run or upload
            log_text_generator(base_source=str(tiny_lm_plain_dir), artifact_kind="none", artifact_dir=None, **kwargs)


def test_an_adapter_or_full_weights_rebuild_the_model_they_were_saved_from(tracking, tiny_lm_plain_dir, tmp_path,
                                                                           reference, isolated):  # noqa: F811
    from peft import LoraConfig, get_peft_model

    lm, tokenizer, _ = load_lm(str(tiny_lm_plain_dir))
    torch.manual_seed(1)
    tuned = get_peft_model(lm, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a fresh LoRA changes nothing (B = 0): give it weights that do
        for name, weight in tuned.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 2.0)
    tuned.save_pretrained(tmp_path / "adapter")
    merged = tuned.merge_and_unload()
    merged.save_pretrained(tmp_path / "weights")
    tokenizer.save_pretrained(tmp_path / "weights")
    ids = plain_ids(tokenizer, EXAMPLE_PROMPT)
    expected = tokenizer.decode(generate_ids(merged, tokenizer, [ids], MAX_NEW, batch_size=1)[0],
                                skip_special_tokens=True)
    assert expected != reference[1](ids)  # the tuning shows

    frame = pd.DataFrame({"prompt": [EXAMPLE_PROMPT]})
    adapter = mlflow.pyfunc.load_model(log(str(tiny_lm_plain_dir), "adapter", str(tmp_path / "adapter")))
    assert adapter.predict(frame)["continuation"][0] == expected
    # Full weights need no base: its source may be gone.
    weights = mlflow.pyfunc.load_model(log(str(tmp_path / "gone"), "weights", str(tmp_path / "weights")))
    assert weights.predict(frame)["continuation"][0] == expected


@pytest.mark.slow
def test_mlflow_models_serve_answers_continuations_and_400s(logged_uri, tracking, tmp_path):
    from tests.registry.test_serving import post, serving

    def body(prompts, **params) -> bytes:
        return json.dumps({"dataframe_records": [{"prompt": p} for p in prompts], "params": params}).encode()

    with serving(logged_uri, tracking, tmp_path, workers=1) as base:
        url = f"{base}/invocations"
        status, answer = post(url, body([EXAMPLE_PROMPT, "Hola " * 200]))
        assert status == 200, answer
        assert [p["truncated"] for p in answer["predictions"]] == [False, True]
        assert all(isinstance(p["continuation"], str) for p in answer["predictions"])
        sampled = [post(url, body([EXAMPLE_PROMPT], temperature=1.0, seed=3, max_new_tokens=6)) for _ in range(2)]
        assert sampled[0][0] == 200 and sampled[0] == sampled[1]
        for request, fragment in [
            (body(["Hola"], temperature=-1), "param 'temperature' must be between 0 and 5"),
            (body(["Hola"], max_new_tokens=0), "param 'max_new_tokens' must be between 1 and 511"),
            (body(["Hola", None]), "row 1: 'prompt' must be a string, got null"),
        ]:
            status, answer = post(url, request)
            assert status == 400 and fragment in answer["message"], answer
        assert post(url, body([EXAMPLE_PROMPT]))[0] == 200
