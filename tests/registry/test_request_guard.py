"""The request guard in front of MLflow's scoring app: no Content-Type -> 415 and JSON nested too
deep -> 400 (MLflow alone answers both with a bare 500); every other request as MLflow answers it.
MLflow's real app (`scoring_server.init`) serves a trivial pyfunc in process."""
from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow.models import ModelSignature
from mlflow.pyfunc import scoring_server
from mlflow.types import ColSpec, Schema
from starlette.testclient import TestClient

from registry.asgi.request_guard import MAX_JSON_DEPTH, RequestGuard, json_depth
from registry.serve import uvicorn_command


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return pd.DataFrame({"summary": model_input["dialogue"].str.upper()})


@pytest.fixture(scope="module")
def mlflow_app(tmp_path_factory):
    path = tmp_path_factory.mktemp("echo") / "model"
    signature = ModelSignature(Schema([ColSpec("string", "dialogue")]), Schema([ColSpec("string", "summary")]))
    mlflow.pyfunc.save_model(path, python_model=Echo(), signature=signature, pip_requirements=[])
    return scoring_server.init(mlflow.pyfunc.load_model(str(path)))


def post(app, body: bytes, content_type: str | None = "application/json"):
    headers = {"content-type": content_type} if content_type else {}
    with TestClient(app, raise_server_exceptions=False) as client:
        request = client.build_request("POST", "/invocations", content=body, headers=headers)
        if content_type is None:
            request.headers.pop("content-type", None)
        return client.send(request)


GOOD = json.dumps({"dataframe_records": [{"dialogue": "a: hi"}]}).encode()
DEEP = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_mlflow_alone_answers_both_with_a_bare_500(mlflow_app):
    assert post(mlflow_app, GOOD, None).status_code == 500
    assert post(mlflow_app, DEEP).status_code == 500


def test_behind_the_guard_both_get_a_4xx_with_a_message(mlflow_app):
    guarded = RequestGuard(mlflow_app)
    missing = post(guarded, GOOD, None)
    assert missing.status_code == 415 and "no Content-Type header" in missing.json()["message"]
    deep = post(guarded, DEEP)
    assert deep.status_code == 400 and f"more than {MAX_JSON_DEPTH} levels" in deep.json()["message"]


def test_every_other_request_is_answered_as_mlflow_answers_it(mlflow_app):
    guarded = RequestGuard(mlflow_app)
    good = post(guarded, GOOD, "application/json; charset=utf-8")
    assert good.status_code == 200 and good.json() == {"predictions": [{"summary": "A: HI"}]}
    assert post(guarded, b"dialogue\na: hi\n", "text/csv").json() == {"predictions": [{"summary": "A: HI"}]}
    assert post(guarded, b"{oops", "application/json").status_code == 400
    assert post(guarded, GOOD, "text/plain").status_code == 415
    with TestClient(guarded) as client:
        assert client.get("/ping").status_code == 200


def test_json_depth_ignores_brackets_inside_strings_and_stops_counting_past_the_limit():
    assert json_depth(b'{"a": [[1], [2]]}') <= MAX_JSON_DEPTH
    assert json_depth(b'{"a": "' + b"[" * 500 + b'"}', limit=10) <= 10  # brackets in a string do not nest
    assert json_depth(b'{"a": "\\"[[[[[[[[[[[[", "b": [[[]]]}', limit=4) == 4
    assert json_depth(b"[" * 5000, limit=64) == 5000


def test_the_server_command_runs_mlflows_app_behind_the_guard_from_this_interpreter(tmp_path):
    argv, env = uvicorn_command(str(tmp_path), "127.0.0.1", 5999, 2, 30)
    assert argv[1:3] == ["-m", "uvicorn"] and argv[-1] == "request_guard:served_app" and "--factory" in argv
    assert env[scoring_server._SERVER_MODEL_PATH] == str(tmp_path) and env["MLFLOW_MODELS_WORKERS"] == "2"
