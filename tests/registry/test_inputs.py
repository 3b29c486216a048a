"""The shared request checks: what they let through and the 400 they raise for the rest."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from registry.inputs import RequestLimits, bad_request, int_param, texts_from_input

LIMITS = RequestLimits(max_rows=3, max_chars=20)


def rejected(call) -> str:
    with pytest.raises(MlflowException) as caught:
        call()
    assert caught.value.get_http_status_code() == 400
    return caught.value.message


def test_valid_texts_come_back_in_order_from_every_input_shape():
    frame = pd.DataFrame({"text": ["a b", "c"], "other": [1, 2]})
    assert texts_from_input(frame, "text", LIMITS) == ["a b", "c"]
    assert texts_from_input(["a b", "c"], "text", LIMITS) == ["a b", "c"]
    assert texts_from_input({"text": np.array(["a b"])}, "text", LIMITS) == ["a b"]
    assert texts_from_input(pd.DataFrame({"text": ["x" * 20]}), "text", LIMITS) == ["x" * 20]


@pytest.mark.parametrize("model_input, fragment", [
    (pd.DataFrame({"dialogue": ["a"]}), "needs a 'text' column, got ['dialogue']"),
    (pd.DataFrame({"text": []}), "no rows"),
    (pd.DataFrame({"text": ["a"] * 4}), "4 rows, at most 3 per request"),
    (pd.DataFrame({"text": ["a", None]}), "row 1: 'text' must be a string, got null"),
    (pd.DataFrame({"text": ["a", np.nan]}), "row 1: 'text' must be a string, got null"),
    (pd.DataFrame({"text": pd.Series(["a", pd.NA], dtype="string")}), "row 1: 'text' must be a string, got null"),
    (pd.DataFrame({"text": [5]}), "row 0: 'text' must be a string, got int"),
    (pd.DataFrame({"text": [["a", "b"]]}), "row 0: 'text' must be a string, got list"),
    (pd.DataFrame({"text": ["ok", " \n\t"]}), "row 1: 'text' is empty"),
    (pd.DataFrame({"text": [""]}), "row 0: 'text' is empty"),
    (pd.DataFrame({"text": ["x" * 21]}), "row 0: 'text' has 21 characters, at most 20"),
    ("just a string", "input must be a table with a 'text' column, got str"),
])
def test_bad_input_is_a_400_naming_the_row_and_the_fault(model_input, fragment):
    assert fragment in rejected(lambda: texts_from_input(model_input, "text", LIMITS))


def test_limits_logged_in_a_model_config_override_the_defaults():
    assert LIMITS.updated_from({"max_rows": "7", "other": 1}) == RequestLimits(max_rows=7, max_chars=20)
    assert LIMITS.updated_from({}) == LIMITS
    assert RequestLimits(**LIMITS.as_config()) == LIMITS
    with pytest.raises(ValueError, match="positive"):
        RequestLimits(max_rows=0)


def test_int_param_takes_the_default_when_absent_and_refuses_out_of_range_values():
    assert int_param(None, "n", 5, 1, 10) == 5
    assert int_param({"n": None}, "n", 5, 1, 10) == 5
    assert int_param({"n": np.int64(10)}, "n", 5, 1, 10) == 10
    assert "param 'n' must be between 1 and 10, got 0" in rejected(lambda: int_param({"n": 0}, "n", 5, 1, 10))
    assert "must be an integer, got True" in rejected(lambda: int_param({"n": True}, "n", 5, 1, 10))
    assert "must be an integer, got 2.5" in rejected(lambda: int_param({"n": 2.5}, "n", 5, 1, 10))


def test_bad_request_is_what_the_scoring_server_answers_with_400():
    assert bad_request("nope").get_http_status_code() == 400
