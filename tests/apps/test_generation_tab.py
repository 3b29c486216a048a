"""The Text generation tab's callback: on a fake pyfunc (what it sends, what it shows for good,
empty and refused input), and on the real text generator logged from the tiny random llama."""
from __future__ import annotations

import re

import mlflow
import pandas as pd
import pytest

from apps.generation_tab import EMPTY_PROMPT, generate_fn, token_counter
from registry.inputs import bad_request
from tests.apps.conftest import GENERATOR_NAME
from tests.registry.test_pyfunc import isolated  # noqa: F401  (a fixture)

PROMPT = "En un lugar de la Mancha"
LATENCY = re.compile(r"^(\d+) tokens in \d+ ms \(\d+\.\d tokens/s\)$")


class FakeGenerator:
    """Answers like the text generator pyfunc; records what it was sent; raises `error` if given."""

    def __init__(self, continuation: str = ", de cuyo nombre", truncated: bool = False, error=None):
        self.continuation, self.truncated, self.error = continuation, truncated, error
        self.calls = []

    def predict(self, df, params=None):
        self.calls.append((df.to_dict("list"), params))
        if self.error:
            raise self.error
        return pd.DataFrame({"continuation": [self.continuation], "truncated": [self.truncated]})


def count_words(text: str) -> int:
    return len(text.split())


def test_a_prompt_is_sent_with_its_params_and_the_continuation_shown_with_its_speed():
    model = FakeGenerator()
    continuation, latency = generate_fn(model, count_words)(PROMPT, 64.0, 0.7, 3.0)
    assert model.calls == [({"prompt": [PROMPT]}, {"max_new_tokens": 64, "temperature": 0.7, "seed": 3})]
    assert continuation == ", de cuyo nombre" and LATENCY.match(latency).group(1) == "4"
    _, latency = generate_fn(model)(PROMPT, 8, 0, None)  # no tokenizer to count with; an emptied seed box
    assert model.calls[-1][1]["seed"] == 0 and re.fullmatch(r"answered in \d+ ms", latency)
    assert token_counter(model) is None


def test_empty_refused_cut_and_ended_prompts_answer_in_one_line():
    model = FakeGenerator()
    assert generate_fn(model)("  \n ", 64, 0, 0) == (EMPTY_PROMPT, "") and model.calls == []
    refused = FakeGenerator(error=bad_request("param 'seed' must be between 0 and 4294967295, got -1\nmore"))
    assert generate_fn(refused)(PROMPT, 64, 0, -1) == (
        "Cannot generate from this input: param 'seed' must be between 0 and 4294967295, got -1", "")
    _, latency = generate_fn(FakeGenerator(truncated=True), count_words)(PROMPT, 64, 0, 0)
    assert latency.endswith("(long prompt: only its end was read)")
    continuation, latency = generate_fn(FakeGenerator(continuation=""), count_words)(PROMPT, 64, 0, 0)
    assert continuation == "" and latency.endswith("the model ended the text at once")


@pytest.fixture
def real_generator(generator_version, isolated):  # noqa: F811
    return mlflow.pyfunc.load_model(f"models:/{GENERATOR_NAME}@champion")


def test_the_real_text_generator_answers_greedy_sampled_and_refused_requests(real_generator):
    generate = generate_fn(real_generator, token_counter(real_generator))
    continuation, latency = generate(PROMPT, 8, 0, 5)
    direct = real_generator.predict(pd.DataFrame({"prompt": [PROMPT]}), params={"max_new_tokens": 8})
    assert continuation == direct["continuation"][0] and int(LATENCY.match(latency).group(1)) > 0
    sampled = generate(PROMPT, 8, 1.5, 7)[0]
    assert generate(PROMPT, 8, 1.5, 7)[0] == sampled != continuation
    for args, message in [((PROMPT, 8, 0.005, 0), "param 'temperature' must be 0 (greedy) or at least 0.01"),
                          (("x" * 60_000, 8, 0, 0), "'prompt' has 60,000 characters, at most 50,000")]:
        refused, latency = generate(*args)
        assert refused.startswith("Cannot generate from this input:") and message in refused
        assert "\n" not in refused and latency == ""
