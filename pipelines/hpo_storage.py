"""Where a shared Optuna study lives, and how its workers share its total of trials.

A storage argument is either
- a database URL (`sqlite:///...`, `postgresql://...`, `postgresql+psycopg://...`, `mysql://...`):
  an RDBStorage, for workers on many machines (PostgreSQL; SQLite lets one writer in at a time);
- a journal file (`journal:PATH`, or a path ending in `.journal` or `.log`): a JournalStorage on
  Optuna's file backend, for many processes on one machine. Each write is one appended line
  under a lock file beside it (a symlink, which is atomic on local disks and NFS), so workers
  never meet SQLite's "database is locked".

The default is $OPTUNA_STORAGE when set (`eval "$(python -m server env)"` sets it to the team
PostgreSQL), else the journal file `mlruns/optuna.journal`.

The study's `n_trials` is its total, shared by its workers (`optimize_to_total`): a worker
counts the trials taken so far under a lock all workers see (a lock file on one machine, an
advisory lock in PostgreSQL or MySQL) and holds it until its next trial exists, so 4 workers
on a total of 8 run 8 trials between them, never 9.

A study is seen live in optuna-dashboard (`make dashboard`, `pipelines/dashboard.py`), which
opens its storage with `open_storage` as the workers do; `dashboard_link` says how, for the run.

Limitation: Optuna 5.0's JournalStorage has no heartbeat, so a trial whose worker was killed
stays RUNNING there and keeps its place in the total; the RDB storages fail it after
HEARTBEAT_GRACE_S and run it once more if the total leaves room.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from pipelines.errors import PlatformError, first_line

JOURNAL_PREFIX = "journal:"
JOURNAL_SUFFIXES = (".journal", ".log")
RDB_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")
EXAMPLES = ("use a database URL (sqlite:///mlruns/optuna.db, postgresql+psycopg://user@host/optuna) "
            "or a journal file (journal:mlruns/optuna.journal, or a path ending in .journal or .log)")

# SQLite lets one writer in at a time: a worker waits this long for another's write instead of
# failing with "database is locked". A PostgreSQL host that does not answer fails after 10 s.
SQLITE_BUSY_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10
# A worker records a heartbeat for its running trial; a trial whose worker died (killed job,
# lost machine) is failed by the next worker to ask for a trial and run once more.
HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_S = 300
# Workers that open a fresh storage at the same moment race to create its tables; the losers
# see one of these errors, wait, and find the tables made.
SCHEMA_RACE_ERRORS = ("UNIQUE constraint failed", "already exists", "duplicate key", "database is locked")

# Where `make dashboard` serves by default: this machine only, since the dashboard has no login
# and can delete studies.
DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 8080

# What spends the study's total: every trial a worker has taken, however it ended. Counting only
# COMPLETE would let a study whose trials are all pruned or all fail run forever; leaving out
# RUNNING would let each of m workers start one more trial while the others' last ones run
# (n + m - 1 in all). WAITING trials (enqueued by hand) count once a worker takes them.
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


def default_storage() -> str:
    """$OPTUNA_STORAGE, else a journal file beside the MLflow tracking store (absolute, so every
    worker's cwd agrees)."""
    if os.environ.get("OPTUNA_STORAGE", "").strip():
        return os.environ["OPTUNA_STORAGE"].strip()
    folder = Path("mlruns").resolve()
    folder.mkdir(exist_ok=True)
    return f"{JOURNAL_PREFIX}{folder / 'optuna.journal'}"


def journal_path(storage: str) -> Path | None:
    """The journal file a storage argument names, or None for a database URL."""
    if storage.startswith(JOURNAL_PREFIX):
        return Path(storage[len(JOURNAL_PREFIX):]).expanduser().resolve()
    if "://" not in storage and storage.endswith(JOURNAL_SUFFIXES):
        return Path(storage).expanduser().resolve()
    return None


def shown_url(storage: str) -> str:
    """The storage for logs and run params: a database URL without its password, a journal file
    as `journal:<absolute path>`."""
    path = journal_path(storage)
    if path is not None:
        return f"{JOURNAL_PREFIX}{path}"
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        raise PlatformError(f"optuna storage '{storage}' is neither a database URL nor a journal file: "
                            f"{EXAMPLES}") from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() not in RDB_DIALECTS:
        raise PlatformError(f"optuna storage {shown} has an unknown scheme '{url.drivername}': {EXAMPLES}")
    return shown


def dashboard_link(storage_url: str, storage: optuna.storages.BaseStorage, study_name: str) -> tuple[str, str]:
    """(command, url): the command that opens the storage in optuna-dashboard, run from the
    project's root, and the study's page at the dashboard's default address. The storage is named
    in full (a journal by its absolute path, a database URL with its password hidden: a
    PGPASSFILE supplies it), so the command opens this study from any working directory."""
    study_id = storage.get_study_id_from_name(study_name)
    command = f"make dashboard STORAGE={shlex.quote(shown_url(storage_url))}"
    return command, f"http://{DASHBOARD_HOST}:{DASHBOARD_PORT}/dashboard/studies/{study_id}"


def open_storage(storage: str) -> optuna.storages.BaseStorage:
    shown = shown_url(storage)  # checks the scheme first
    path = journal_path(storage)
    return open_rdb(storage, shown) if path is None else open_journal(path)


def open_journal(path: Path) -> optuna.storages.JournalStorage:
    folder = path.parent
    if not folder.is_dir():
        reason = "is not a directory" if folder.exists() else "does not exist"
        raise PlatformError(f"optuna storage journal:{path}: its directory {folder} {reason}")
    # The lock is a symlink made beside the file, so the directory must take new entries even
    # when the journal itself exists.
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PlatformError(f"optuna storage journal:{path}: its directory {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise PlatformError(f"optuna storage journal:{path}: the file is not writable")
    try:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    except OSError as exc:
        raise PlatformError(f"optuna storage journal:{path} cannot be opened: {first_line(exc)}") from None


def open_rdb(url: str, shown: str) -> optuna.storages.RDBStorage:
    dialect = sqlalchemy.engine.make_url(url).get_backend_name()
    connect_args = {"sqlite": {"timeout": SQLITE_BUSY_TIMEOUT_S},
                    "postgresql": {"connect_timeout": CONNECT_TIMEOUT_S},
                    "mysql": {"connect_timeout": CONNECT_TIMEOUT_S}}.get(dialect, {})
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat: chosen
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"connect_args": connect_args}, heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=HEARTBEAT_GRACE_S,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except (ImportError, sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.OptunaError, OSError) as exc:
            if attempt < 2 and any(race in str(exc) for race in SCHEMA_RACE_ERRORS):
                time.sleep(1 + attempt)
                continue
            raise PlatformError(f"optuna storage {shown} cannot be reached: {first_line(exc)}") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def trials_spent(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=BUDGET_STATES))


class StudyLock:
    """A lock all of a study's workers see, held from counting the study's trials until the next
    trial exists, so that two workers never both take the last one. The operating system or the
    database server releases it when its holder dies."""

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, journal: Path | None):
        self.engine = getattr(storage, "engine", None)  # RDBStorage's SQLAlchemy engine
        dialect = self.engine.dialect.name if self.engine is not None else None
        # One machine (journal, SQLite): a lock file beside the storage. PostgreSQL / MySQL: the
        # server's own locks, keyed by the study, so other studies do not wait. Any other
        # database: none, and workers finishing together may pass the total by a few trials.
        sqlite_file = self.engine.url.database if dialect == "sqlite" else None
        self.file = Path(f"{journal or sqlite_file}.total.lock") if journal or sqlite_file else None
        self.kind = "file" if self.file else dialect if dialect in ("postgresql", "mysql", "mariadb") else None
        digest = hashlib.sha256(study_name.encode()).digest()
        self.params = {"key": int.from_bytes(digest[:8], "big", signed=True), "name": f"optuna:{digest.hex()[:32]}"}
        self._held = None  # the open lock file, or the connection holding the server's lock

    def acquire(self) -> None:
        if self._held is not None or self.kind is None:
            return
        if self.kind == "file":
            held = open(self.file, "a")  # noqa: SIM115 -- stays open while the lock is held
            fcntl.flock(held, fcntl.LOCK_EX)
        else:
            held = self.engine.connect()
            lock = "SELECT pg_advisory_lock(:key)" if self.kind == "postgresql" else "SELECT GET_LOCK(:name, -1)"
            held.execute(sqlalchemy.text(lock), self.params)
            held.commit()  # the lock belongs to the session: no transaction stays open meanwhile
        self._held = held

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        if self.kind == "file":
            fcntl.flock(held, fcntl.LOCK_UN)
        else:
            unlock = "SELECT pg_advisory_unlock(:key)" if self.kind == "postgresql" else "SELECT RELEASE_LOCK(:name)"
            held.execute(sqlalchemy.text(unlock), self.params)
            held.commit()
        held.close()


class StudyTotal(MaxTrialsCallback):
    """Optuna's MaxTrialsCallback (the study stops once BUDGET_STATES reach the total), counting
    under the study's lock. Alone, it counts after a trial and the next trial is asked for later,
    outside any lock: workers finishing together all start one more (optuna issue #3518). Here
    the lock stays held until the next trial exists (`admitted`) or the study stops."""

    def __init__(self, total: int, lock: StudyLock):
        super().__init__(total, states=BUDGET_STATES)
        self.total, self.lock = total, lock

    def __call__(self, study: optuna.Study, trial) -> None:
        self.lock.acquire()
        super().__call__(study, trial)
        # Counted again (under the lock, so the same count): MaxTrialsCallback does not say whether it stopped.
        if trials_spent(study) >= self.total:
            self.lock.release()

    def admitted(self) -> None:
        self.lock.release()


def optimize_to_total(study: optuna.Study, objective, total: int, lock: StudyLock,
                      catch: tuple[type[Exception], ...]) -> int:
    """Run trials until the study has `total` of them between all its workers; returns how many
    remained when this worker started (0: the study is done and this worker runs none, also when
    it is run again: a larger total adds trials)."""
    callback = StudyTotal(total, lock)

    def admitted(trial: optuna.Trial) -> float:
        callback.admitted()  # the trial exists: the next worker may count it
        return objective(trial)

    lock.acquire()  # the callback runs only after a trial: the first one is counted here
    try:
        remaining = max(0, total - trials_spent(study))
        if remaining:
            study.optimize(admitted, n_trials=remaining, catch=catch, callbacks=[callback])
    finally:
        lock.release()  # when the study stopped, or asking for a trial failed
    return remaining
