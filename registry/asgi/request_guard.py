"""A 4xx, not MLflow's bare 500, for the two malformed requests MLflow 3.17's scoring server does
not catch: a POST to /invocations without a `Content-Type` header (MLflow calls `.split` on None)
and JSON nested deeper than Python's recursion limit (`json.loads` raises RecursionError). Both
fail before the model is called, so no pyfunc code can answer them; and a model's own code runs
only while the model loads, before MLflow builds its app, so it could reach the app only by
patching MLflow. Hence this middleware, and `python -m registry.serve`, which builds MLflow's own
app for a model and puts the middleware in front of it. Every other request passes through as is.

Standard library and MLflow only (see `registry/asgi/__init__.py`).
"""
from __future__ import annotations

import itertools
import json
import os
import re

MAX_JSON_DEPTH = 64  # the served models take tables: a request nests 3 or 4 levels deep
JSON_TYPES = {b"application/json"}
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep `body`'s brackets nest outside strings: the exact depth once the brackets could nest
    past `limit`, else a bound at most `limit` (their count). C speed throughout: a count, a
    regex, a translate and an accumulate, so a large body costs milliseconds, not a Python loop."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return min(limit, body.count(b"[") + body.count(b"{"))
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_DELTA.__getitem__, brackets)), default=0)


async def _answer(send, status: int, error_code: str, message: str) -> None:
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> tuple[bytes, dict | None]:
    """The whole request body, and the disconnect message if the client left while sending it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


class RequestGuard:
    """ASGI middleware: refuses the requests above with a message, passes the others to `app`."""

    def __init__(self, app, max_depth: int = MAX_JSON_DEPTH):
        self.app, self.max_depth = app, max_depth

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/invocations":
            return await self.app(scope, receive, send)
        content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        if not content_type:
            return await _answer(send, 415, "BAD_REQUEST", "the request has no Content-Type header: send "
                                 "application/json (or text/csv, application/x-parquet)")
        if content_type not in JSON_TYPES:
            return await self.app(scope, receive, send)
        body, left = await _read_body(receive)
        if json_depth(body, self.max_depth) > self.max_depth:
            return await _answer(send, 400, "INVALID_PARAMETER_VALUE",
                                 f"the JSON body nests more than {self.max_depth} levels deep; a request is a table")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return left or await receive()

        return await self.app(scope, replay, send)


def served_app():
    """The app `python -m registry.serve` starts (`uvicorn --factory`): MLflow's scoring app for
    the model at MLflow's own environment variable, built as `mlflow models serve` builds it."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(os.environ[scoring_server._SERVER_MODEL_PATH])
    return RequestGuard(scoring_server.init(model))
