"""The server's secrets: the PostgreSQL role's password and the MLflow admin's, read from the
environment or else from `.server/credentials` (created on first start, mode 0600). They are
handed to the servers through files and environment variables, never on a command line, and are
never printed."""
from __future__ import annotations

import configparser
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

DB_PASSWORD_ENV, ADMIN_USER_ENV, ADMIN_PASSWORD_ENV = (
    "ADAPTLAB_DB_PASSWORD", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@dataclass(frozen=True)
class Credentials:
    db_password: str
    admin_user: str
    admin_password: str
    flask_secret: str  # signs the auth app's CSRF tokens; the same for every worker and restart

    def __repr__(self) -> str:  # never shows a secret, even in a traceback's locals
        return f"Credentials(admin_user={self.admin_user!r}, passwords hidden)"


def write_private(path: Path, text: str) -> None:
    """Write `text` readable by its owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(partial, path)


def load_or_create(path: Path) -> Credentials:
    stored = configparser.ConfigParser()
    stored.read(path)
    if not stored.has_section("server"):
        stored["server"] = {}
    section = stored["server"]
    generated = {"db_password": secrets.token_urlsafe(24), "admin_user": "admin",
                 "admin_password": secrets.token_urlsafe(24), "flask_secret": secrets.token_urlsafe(32)}
    missing = {k: v for k, v in generated.items() if k not in section}
    if missing:
        section.update(missing)
        write_private(path, "[server]\n" + "".join(f"{k} = {v}\n" for k, v in section.items()))
    env = os.environ
    return Credentials(db_password=env.get(DB_PASSWORD_ENV) or section["db_password"],
                       admin_user=env.get(ADMIN_USER_ENV) or section["admin_user"],
                       admin_password=env.get(ADMIN_PASSWORD_ENV) or section["admin_password"],
                       flask_secret=env.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or section["flask_secret"])
