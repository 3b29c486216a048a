"""`mlflow models serve -m models:/<name>@champion --env-manager local` answers real HTTP requests."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines import compare
from tests.conftest import DIALOGUES
from tests.pipelines.test_compare import write_spec

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture
def server(tracking, tmp_path, tiny_lm_dir, dialogue_files):
    spec = write_spec(tmp_path, tiny_lm_dir, dialogue_files, methods=[{"name": "lora", "r": 2}])
    assert compare.main([spec]) == 0
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/tiny-summarizer@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not answer /ping within 180 s")
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_served_champion_answers_and_rejects_malformed_requests(server):
    url = f"{server}/invocations"
    dialogues = [DIALOGUES[0][0], DIALOGUES[1][0]]
    status, body = post(url, json.dumps({"dataframe_records": [{"dialogue": d} for d in dialogues]}).encode())
    assert status == 200 and len(body["predictions"]) == 2
    assert all(isinstance(p["summary"], str) for p in body["predictions"])
    status, body = post(url, json.dumps({"inputs": {"dialogue": dialogues[:1]}, "params": {"max_new_tokens": 2}}).encode())
    assert status == 200 and len(body["predictions"]) == 1

    for bad in [b"{not json", json.dumps({"dataframe_records": [{"text": "x"}]}).encode(),
                json.dumps({"dataframe_records": [{"dialogue": ""}]}).encode(),
                json.dumps({"inputs": {"dialogue": ["A: hi"]}, "params": {"max_new_tokens": 0}}).encode()]:
        status, body = post(url, bad)
        assert status == 400, (bad, body)
        assert body.get("message")
    # A dialogue far longer than the model's context is truncated, not a crash.
    status, body = post(url, json.dumps({"dataframe_records": [{"dialogue": "A: hello there.\n" * 2000}]}).encode())
    assert status == 200
