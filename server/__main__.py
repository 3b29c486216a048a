"""python -m server start | run | stop | status | env | login

`start` brings up PostgreSQL and `mlflow server` in the background and returns; `run` does the
same and stops both on Ctrl-C; `env` prints the settings a client shell needs (no password: MLflow
reads it from MLFLOW_TRACKING_PASSWORD or ~/.mlflow/credentials, libpq from PGPASSFILE); `login`
writes the admin's credentials into ~/.mlflow/credentials (mode 0600) on the server host.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipelines.errors import PlatformError
from server.credentials import load_or_create, write_private
from server.mlflow_server import MlflowServer
from server.postgres import Postgres
from server.settings import ServerSettings


def servers() -> tuple[ServerSettings, Postgres, MlflowServer]:
    settings = ServerSettings.from_env()
    credentials = load_or_create(settings.path("credentials"))
    postgres = Postgres(settings, credentials)
    return settings, postgres, MlflowServer(settings, credentials, postgres)


def client_env(settings: ServerSettings, postgres: Postgres) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": settings.tracking_uri, "PGPASSFILE": str(postgres.pgpass),
            "OPTUNA_STORAGE": postgres.url("optuna")}


def start() -> None:
    settings, postgres, mlflow_server = servers()
    print(f"[server] PostgreSQL on {settings.client_host}:{settings.postgres_port} (data: {postgres.data})", flush=True)
    postgres.start()
    print(f"[server] mlflow server on {settings.tracking_uri} (log: {mlflow_server.log})", flush=True)
    mlflow_server.start()
    print(f"[server] ready; admin user '{mlflow_server.credentials.admin_user}', password in "
          f"{settings.path('credentials')}. In a client shell: eval \"$(python -m server env)\"", flush=True)


def stop() -> None:
    _, postgres, mlflow_server = servers()
    mlflow_server.stop()
    postgres.stop()
    print("[server] stopped", flush=True)


def login() -> None:
    _, _, mlflow_server = servers()
    path = Path.home() / ".mlflow" / "credentials"
    if path.exists():
        print(f"[server] {path} exists; left as it is", flush=True)
        return
    credentials = mlflow_server.credentials
    write_private(path, f"[mlflow]\nmlflow_tracking_username = {credentials.admin_user}\n"
                        f"mlflow_tracking_password = {credentials.admin_password}\n")
    print(f"[server] wrote {path} for user '{credentials.admin_user}'", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "run", "stop", "status", "env", "login"])
    command = parser.parse_args(argv).command
    try:
        if command == "start":
            start()
        elif command == "run":
            start()
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                stop()
        elif command == "stop":
            stop()
        elif command == "status":
            settings, postgres, mlflow_server = servers()
            print(f"postgres: {'running' if postgres.running() else 'stopped'}; "
                  f"mlflow server {settings.tracking_uri}: {'healthy' if mlflow_server.healthy() else 'down'}")
        elif command == "login":
            login()
        else:
            settings, postgres, _ = servers()
            for key, value in client_env(settings, postgres).items():
                print(f"export {key}={value}")
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
