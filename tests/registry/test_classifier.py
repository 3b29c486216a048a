"""The servable classifier: texts in; label, probability and per-class probabilities out, in
process and behind a real `mlflow models serve`; malformed requests are 400s with a message.
(The request checks themselves are tested in test_inputs.py.)"""
from __future__ import annotations

import json
import threading

import mlflow
import pandas as pd
import pytest

from pipelines import compare
from registry.classifier import LIMITS, signature
from tests.pipelines.test_cell_classification import write_cls_spec
from tests.registry.test_pyfunc import logged_as_code_like_the_old_model
from tests.registry.test_serving import post, serving

URI = "models:/tiny-classifier@champion"


def test_signature_lists_a_probability_column_per_label():
    outputs = signature(["negative", "positive"]).outputs.input_names()
    assert outputs == ["label", "probability", "truncated", "p_negative", "p_positive"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_encoder_dir):
    from tests.conftest import sentiment_rows, write_jsonl

    root = tmp_path_factory.mktemp("classifier")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    (root / "mlruns").mkdir()
    files = {"train": write_jsonl(root / "t.jsonl", sentiment_rows(96, seed=1)),
             "eval": write_jsonl(root / "e.jsonl", sentiment_rows(32, seed=2))}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(root)
        mlflow.set_tracking_uri(uri)
        spec = write_cls_spec(root, tiny_encoder_dir, files, [{"name": "full", "learning_rate": 3e-3}])
        assert compare.main([spec]) == 0
        yield root, uri


def test_it_is_logged_as_code_with_the_signature_and_example_it_had_as_a_pickle(registered, tmp_path):
    logged_as_code_like_the_old_model(URI, "old_classifier", tmp_path)


def test_concurrent_requests_share_a_batch_and_get_their_own_answers(registered):
    model = mlflow.pyfunc.load_model(URI)
    texts = ["the movie was great fun", "the plot was awful and dull", "a nice story", "a poor film"]
    alone = [model.predict(pd.DataFrame({"text": [t]})).iloc[0] for t in texts]
    answers: dict[int, pd.Series] = {}

    def ask(i):
        answers[i] = model.predict(pd.DataFrame({"text": [texts[i]]})).iloc[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, expected in enumerate(alone):
        assert answers[i]["label"] == expected["label"]
        assert answers[i]["probability"] == pytest.approx(expected["probability"], abs=1e-5)
    assert [a["label"] for a in alone] == ["positive", "negative", "positive", "negative"]


@pytest.mark.slow
def test_the_served_classifier_answers_and_refuses_malformed_requests(registered):
    root, uri = registered
    with serving(URI, uri, root) as base:
        url = f"{base}/invocations"
        status, body = post(url, json.dumps({"dataframe_records": [{"text": "great fun"}, {"text": "awful"}]}).encode())
        assert status == 200
        rows = body["predictions"]
        assert [r["label"] for r in rows] == ["positive", "negative"]
        assert all(abs(r["p_negative"] + r["p_positive"] - 1) < 1e-5 and not r["truncated"] for r in rows)
        status, body = post(url, json.dumps({"dataframe_records": [{"text": "the plot was awful " * 40}]}).encode())
        assert status == 200 and body["predictions"][0]["truncated"] is True
        bad = {
            "empty": {"dataframe_records": [{"text": ""}]},
            "null": {"dataframe_records": [{"text": None}]},
            "number": {"dataframe_records": [{"text": 7}]},
            "wrong column": {"dataframe_records": [{"sentence": "fine"}]},
            "huge": {"dataframe_records": [{"text": "x" * (LIMITS.max_chars + 1)}]},
            "too many rows": {"dataframe_records": [{"text": "ok"}] * (LIMITS.max_rows + 1)},
        }
        for case, payload in bad.items():
            status, body = post(url, json.dumps(payload).encode())
            assert status == 400, (case, status, body)
            assert body.get("message"), case
        status, _ = post(url, b"{not json")
        assert status == 400
        status, body = post(url, json.dumps({"dataframe_records": [{"text": "great"}]}).encode())
        assert status == 200 and body["predictions"][0]["label"] == "positive"
