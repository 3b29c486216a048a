"""`mlflow models serve -m models:/<name>@champion --env-manager local` holds up: good requests
get summaries, every malformed one a 4xx with a message, and the server keeps answering.

One real server (two uvicorn workers, as recommended) serves the whole module."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines import compare
from registry.summarizer import LIMITS
from tests.conftest import DIALOGUES, write_jsonl
from tests.pipelines.test_compare import write_spec

pytestmark = pytest.mark.slow
MODEL_URI = "models:/tiny-summarizer@champion"
GOOD = json.dumps({"dataframe_records": [{"dialogue": DIALOGUES[0][0]}]}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: bytes, content_type: str | None = "application/json") -> tuple[int, dict | str]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers)
    if content_type is None:
        request.remove_header("Content-type")  # urllib adds a form content type to any POST
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        try:
            return err.code, json.loads(text)
        except json.JSONDecodeError:
            return err.code, text


def records(*values) -> bytes:
    return json.dumps({"dataframe_records": [{"dialogue": v} for v in values]}).encode()


@pytest.fixture(scope="module")
def tracking_dir(tmp_path_factory, tiny_lm_dir):
    """A tracking store whose `tiny-summarizer@champion` the platform itself registered."""
    import mlflow

    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    (root / "mlruns").mkdir()
    rows = [{"dialogue": d, "summary": s} for d, s in DIALOGUES]
    files = {"train": write_jsonl(root / "train.jsonl", rows * 2), "eval": write_jsonl(root / "eval.jsonl", rows[:4])}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(root)
        mlflow.set_tracking_uri(uri)
        spec = write_spec(root, tiny_lm_dir, files, methods=[{"name": "lora", "r": 2}])
        assert compare.main([spec]) == 0
        yield root, uri


@contextlib.contextmanager
def serving(model_uri: str, tracking_uri: str, root: Path, workers: int = 2):
    """`mlflow models serve` of `model_uri` on a free port, as users start it; yields its base URL."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_MODELS_WORKERS": str(workers),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log_path = root / f"server-{port}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.time() + 180
    try:
        while log_path.read_text().count("Application startup complete") < workers:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {log_path.read_text()[-2000:]}")
            if time.time() > deadline:
                pytest.fail(f"the server's {workers} workers did not start within 180 s")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


@pytest.fixture(scope="module")
def server(tracking_dir):
    root, uri = tracking_dir
    with serving(MODEL_URI, uri, root) as base:
        yield base


def test_well_formed_requests_in_every_format_get_summaries(server):
    url = f"{server}/invocations"
    dialogues = [DIALOGUES[0][0], DIALOGUES[1][0]]
    status, body = post(url, records(*dialogues))
    assert status == 200 and len(body["predictions"]) == 2
    assert all(isinstance(p["summary"], str) for p in body["predictions"])
    status, body = post(url, json.dumps({"inputs": {"dialogue": dialogues[:1]}, "params": {"max_new_tokens": 2}}).encode())
    assert status == 200 and len(body["predictions"]) == 1
    split = {"dataframe_split": {"columns": ["dialogue"], "data": [[d] for d in dialogues]}}
    assert post(url, json.dumps(split).encode())[0] == 200
    # Longer than the model's prompt budget but within the character limit: truncated, answered.
    assert post(url, records("A: hello there.\n" * 2000))[0] == 200
    # Exactly the row limit is fine.
    assert post(url, records(*[dialogues[0]] * LIMITS.max_rows))[0] == 200


MALFORMED = {
    # MLflow's scoring server refuses these before the model sees them.
    "bad JSON": (b'{"dataframe_records": [{"dialogue": "unterminated', "valid JSON"),
    "empty body": (b"", "valid JSON"),
    "a list, not an object": (json.dumps([{"dialogue": "A: hi"}]).encode(), "JSON dictionary"),
    "a string, not an object": (json.dumps("A: hi").encode(), "JSON dictionary"),
    "JSON null": (b"null", "JSON dictionary"),
    "no input key": (json.dumps({"dialogue": "A: hi"}).encode(), "exactly one of the input fields"),
    "records not a list": (json.dumps({"dataframe_records": "A: hi"}).encode(), "list of records"),
    "wrong field": (json.dumps({"dataframe_records": [{"text": "A: hi"}]}).encode(), "dialogue"),
    "no rows": (json.dumps({"dataframe_records": []}).encode(), "dialogue"),
    "param of the wrong type": (json.dumps({"inputs": {"dialogue": ["A: hi"]}, "params": {"max_new_tokens": "many"}}).encode(),
                                "max_new_tokens"),
    "params not an object": (json.dumps({"inputs": {"dialogue": ["A: hi"]}, "params": [1]}).encode(), "arameters"),
    # The summarizer's own checks (registry.inputs).
    "empty string": (records(""), "row 0: 'dialogue' is empty"),
    "blank string": (records("A: hi", " \n\t"), "row 1: 'dialogue' is empty"),
    "null": (records("A: hi", None), "row 1: 'dialogue' must be a string, got null"),
    "a number": (records(42), "row 0: 'dialogue' must be a string, got int"),
    "a list": (records(["A: hi", "B: yo"]), "row 0: 'dialogue' must be a string, got list"),
    "200k characters": (records("A: hello. " * 20_000), "row 0: 'dialogue' has 200,000 characters, at most 50,000"),
    "too many rows": (records(*["A: hi"] * (LIMITS.max_rows + 1)), f"at most {LIMITS.max_rows} per request"),
    "max_new_tokens 0": (json.dumps({"inputs": {"dialogue": ["A: hi"]}, "params": {"max_new_tokens": 0}}).encode(),
                         "param 'max_new_tokens' must be between 1 and 1024, got 0"),
    "max_new_tokens huge": (json.dumps({"inputs": {"dialogue": ["A: hi"]}, "params": {"max_new_tokens": 10**9}}).encode(),
                            "must be between 1 and 1024"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_request_gets_a_400_with_a_message_and_the_server_carries_on(server, case):
    body, fragment = MALFORMED[case]
    status, answer = post(f"{server}/invocations", body)
    assert status == 400, (case, answer)
    assert fragment in answer["message"], (case, answer["message"][-300:])
    assert post(f"{server}/invocations", GOOD)[0] == 200


def test_unsupported_content_types_get_a_415(server):
    status, answer = post(f"{server}/invocations", b"A: hi", content_type="text/plain")
    assert status == 415 and "content types" in answer
    status, answer = post(f"{server}/invocations", GOOD, content_type="application/json; charset=latin-1")
    assert status == 415 and "UTF-8" in answer


def test_requests_mlflow_itself_fails_on_do_not_take_the_server_down(server):
    # MLflow 3.17's scoring server answers these two with a bare 500 before any model code runs
    # (no Content-Type header: it calls .split on None; JSON nested deeper than Python's
    # recursion limit: json.loads raises RecursionError). Documented in the README; what we can
    # promise is that the server goes on answering.
    for body, content_type in [(GOOD, None), (b"[" * 100_000 + b"]" * 100_000, "application/json")]:
        status, _ = post(f"{server}/invocations", body, content_type=content_type)
        assert status >= 400
    assert post(f"{server}/invocations", GOOD)[0] == 200


def test_keep_alive_answers_are_not_held_back_by_nagles_algorithm(server):
    # With several workers, uvicorn's asyncio loop leaves TCP_NODELAY off (Kludex/uvicorn#3149):
    # each answer on a kept-alive connection then waits ~40 ms for the client's delayed ACK.
    # uvloop (requirements.txt) sets it; a request the model refuses takes a few ms otherwise.
    conn = http.client.HTTPConnection("127.0.0.1", int(server.rsplit(":", 1)[1]), timeout=60)
    seconds = []
    for _ in range(12):
        started = time.perf_counter()
        conn.request("POST", "/invocations", body=records(""), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 400
        seconds.append(time.perf_counter() - started)
    conn.close()
    assert statistics.median(seconds[2:]) < 0.030, seconds


def test_concurrent_good_and_malformed_requests_get_no_5xx(server):
    bodies = [GOOD, records(""), b"{not json", records(*[DIALOGUES[1][0]] * 3)] * 6
    statuses: list[int] = []

    def send(body):
        statuses.append(post(f"{server}/invocations", body)[0])

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == sorted([200, 400, 400, 200] * 6)


def test_the_load_benchmark_runs_against_the_server(server, tracking_dir, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import serve_load

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_dir[1])
    monkeypatch.setenv("MLFLOW_MODELS_WORKERS", "2")  # main() sets it for its bare predict; undone after
    threads = torch.get_num_threads()
    code = serve_load.main([MODEL_URI, "--url", server, "--workers", "2", "--requests", "20", "--concurrency", "1", "4",
                            "--malformed", "0.2", "--pool", "3", "--bare-rounds", "1", "--out-dir", str(tmp_path)])
    torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads(next(tmp_path.glob("serve_load-summarizer-w2-*.json")).read_text())
    for level in result["levels"]:
        assert level["status"] == {"2xx": 16, "4xx": 4, "5xx": 0} and level["connection_errors"] == 0
        assert level["unexpected"] == 0 and len(level["good_latencies_ms"]) == 16
    assert result["bare_p50_ms"] > 0 and result["figures"]["p50_c1_over_bare"] > 0
    assert "throughput@c8 / throughput@c1" in printed
