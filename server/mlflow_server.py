"""`mlflow server` on the PostgreSQL of `server.postgres`, with its artifact proxy and MLflow's
basic-auth app. It runs in its own session so it outlives the shell that started it; its pid is
kept in `.server/mlflow.pid`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from pipelines.errors import PlatformError
from server.credentials import Credentials, write_private
from server.postgres import Postgres
from server.settings import ServerSettings

# Credential checks are PBKDF2 hashes, one per request: cached for a minute, a grid's many small
# logging calls cost one check, not hundreds (MLflow's own option, off by default).
AUTH_CACHE_SECONDS = 60


class MlflowServer:
    def __init__(self, settings: ServerSettings, credentials: Credentials, postgres: Postgres):
        self.settings, self.credentials, self.postgres = settings, credentials, postgres
        self.pid_file = settings.path("mlflow.pid")
        self.log = settings.path("logs") / "mlflow.log"

    def _auth_config(self) -> str:
        path = self.settings.path("basic_auth.ini")
        write_private(path, "[mlflow]\ndefault_permission = READ\n"
                            f"database_uri = {self.postgres.url('mlflow_auth')}\n"
                            f"admin_username = {self.credentials.admin_user}\n"
                            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                            f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n")
        return str(path)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None

    def start(self, timeout: float = 180) -> None:
        if self.pid() is not None and self.healthy():
            return
        artifacts = self.settings.path("artifacts")
        artifacts.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": self.postgres.url("mlflow"),
               "MLFLOW_AUTH_CONFIG_PATH": self._auth_config(), "PGPASSFILE": str(self.postgres.pgpass),
               "MLFLOW_AUTH_ADMIN_PASSWORD": self.credentials.admin_password,
               "MLFLOW_FLASK_SERVER_SECRET_KEY": self.credentials.flask_secret,
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        for leaked in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
            env.pop(leaked, None)
        command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
                   "--serve-artifacts", "--artifacts-destination", str(artifacts),
                   "--host", self.settings.host, "--port", str(self.settings.mlflow_port), "--workers", "2"]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        self._wait_healthy(process, timeout)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.settings.tracking_uri}/health", timeout=5) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _wait_healthy(self, process: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if process.poll() is not None:
                raise PlatformError(f"mlflow server exited with code {process.returncode}: {self._last_log_line()}"
                                    f" (log: {self.log})")
            if time.monotonic() > deadline:
                raise PlatformError(f"mlflow server not healthy after {timeout:.0f} s (log: {self.log})")
            time.sleep(1)

    def _last_log_line(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1][:300] if lines else "no output"

    def stop(self, timeout: float = 30) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        if self.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
