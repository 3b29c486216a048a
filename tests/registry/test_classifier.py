"""The classifier pyfunc's request contract: texts in; label, probability and per-class
probabilities out; malformed requests are 400s (MlflowException with INVALID_PARAMETER_VALUE)."""
from __future__ import annotations

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from registry.classifier import MAX_CHARS, MAX_ROWS, signature, texts_from_request


def test_signature_lists_a_probability_column_per_label():
    outputs = signature(["negative", "positive"]).outputs.input_names()
    assert outputs == ["label", "probability", "truncated", "p_negative", "p_positive"]


def test_a_table_or_a_list_of_texts_is_accepted():
    assert texts_from_request(pd.DataFrame({"text": ["a", "b"]})) == ["a", "b"]
    assert texts_from_request(["a"]) == ["a"]


@pytest.mark.parametrize("request_input, message", [
    (pd.DataFrame({"sentence": ["a"]}), "input needs a 'text' column, got ['sentence']"),
    (pd.DataFrame({"text": []}), "input has no rows"),
    (pd.DataFrame({"text": ["ok", "  "]}), "row 1: 'text' must be a non-empty string"),
    (pd.DataFrame({"text": [None]}), "row 0: 'text' must be a non-empty string"),
    (pd.DataFrame({"text": [3]}), "row 0: 'text' must be a non-empty string"),
    (pd.DataFrame({"text": ["x" * (MAX_CHARS + 1)]}), f"more than the {MAX_CHARS} allowed"),
    (pd.DataFrame({"text": ["a"] * (MAX_ROWS + 1)}), f"at most {MAX_ROWS} texts per request"),
    ({"text": "a"}, "input must be a table with a 'text' column or a list of texts"),
])
def test_malformed_requests_are_bad_requests(request_input, message):
    with pytest.raises(MlflowException) as err:
        texts_from_request(request_input)
    assert message in err.value.message
    assert err.value.get_http_status_code() == 400
