"""`make dashboard` (pipelines/dashboard.py): optuna-dashboard over a journal file that Optuna
itself wrote, answering its API with the study and the page an hpo run links to; bad storage in
one line."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import optuna

from pipelines import dashboard
from pipelines.hpo_storage import DASHBOARD_PORT, dashboard_link, open_storage
from tests.conftest import REPO

START_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def test_the_dashboard_serves_a_journal_study_and_the_page_hpo_links_to(tmp_path):
    journal = f"journal:{tmp_path / 'optuna.journal'}"
    study = optuna.create_study(storage=open_storage(journal), study_name="tiny", direction="minimize")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=3)

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "pipelines.dashboard", "--storage", journal, "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + START_S
        while (answer := get(f"http://127.0.0.1:{port}/api/studies"))[0] != 200:
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.poll() else ""
            time.sleep(0.5)
        listed = json.loads(answer[1])["study_summaries"]
        assert [s["study_name"] for s in listed] == ["tiny"]

        command, url = dashboard_link(journal, open_storage(journal), "tiny")
        assert command == f"make dashboard STORAGE={journal}"
        assert url == f"http://127.0.0.1:{DASHBOARD_PORT}/dashboard/studies/{listed[0]['study_id']}"
        page = url.replace(f":{DASHBOARD_PORT}/", f":{port}/")  # the link, on this test's port
        assert get(page)[0] == 200
        status, detail = get(f"http://127.0.0.1:{port}/api/studies/{listed[0]['study_id']}")
        assert status == 200 and len(json.loads(detail)["trials"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()


def test_a_storage_it_cannot_open_fails_in_one_line(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "optuna.journal"
    assert dashboard.main(["--storage", f"journal:{missing}"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: optuna storage journal:{missing}: its directory "
                                               f"{missing.parent} does not exist")
