"""Where the server keeps its state and which ports it listens on, from the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ServerSettings:
    home: Path
    """Directory for the PostgreSQL data, artifacts, logs and the credentials file."""
    host: str = "127.0.0.1"
    """Address both servers listen on; 0.0.0.0 to serve a team over the network."""
    postgres_port: int = 5433
    """PostgreSQL's port (not 5432, so a system PostgreSQL can run beside it)."""
    mlflow_port: int = 5002
    """`mlflow server`'s port (5000 is `make ui`, 5001 is `make serve`)."""
    system_user: str = "adaptlab-pg"
    """The unprivileged system user PostgreSQL runs as when started by root (it refuses root)."""
    database_role: str = "adaptlab"
    """The PostgreSQL role that owns the tracking, auth and studies databases."""

    @classmethod
    def from_env(cls) -> ServerSettings:
        env = os.environ
        return cls(home=Path(env.get("ADAPTLAB_SERVER_HOME", PROJECT_ROOT / ".server")).resolve(),
                   host=env.get("ADAPTLAB_SERVER_HOST", cls.host),
                   postgres_port=int(env.get("ADAPTLAB_POSTGRES_PORT", cls.postgres_port)),
                   mlflow_port=int(env.get("ADAPTLAB_MLFLOW_PORT", cls.mlflow_port)))

    @property
    def client_host(self) -> str:
        return "127.0.0.1" if self.host == "0.0.0.0" else self.host

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.client_host}:{self.mlflow_port}"

    def path(self, name: str) -> Path:
        return self.home / name
