"""`make dashboard`: the Optuna studies of `hpo` in optuna-dashboard, live, from the storage the
workers write to.

    make dashboard                                    # http://127.0.0.1:8080, hpo's default storage
    make dashboard DASHBOARD_PORT=8081 STORAGE=journal:/abs/path/mlruns/optuna.journal
    python -m pipelines.dashboard --storage postgresql+psycopg://optuna@db-host/optuna --port 8080

The storage is opened by the function the workers use (`pipelines.hpo_storage.open_storage`), so
it takes the same arguments, default and one-line errors: $OPTUNA_STORAGE when set, else the
journal file `mlruns/optuna.journal`, or `--storage` as `journal:PATH`, a path ending in .journal
or .log, or a database URL. optuna-dashboard's own CLI knows neither the `journal:` form nor
$OPTUNA_STORAGE, and takes a journal only as the bare path of a file that already exists.

Each `hpo` parent run names its study's page (tag `optuna_dashboard`) and the command that
serves it (`optuna_dashboard.command`).

Limitations: it binds to 127.0.0.1 unless told `--host`, since the dashboard has no login and can
delete studies; it runs optuna-dashboard's single-threaded development server (`run_server`),
made for one user's browser, not for a team (that would be its WSGI app behind gunicorn).
"""
from __future__ import annotations

import argparse
import sys

from pipelines.errors import PlatformError
from pipelines.hpo_storage import DASHBOARD_HOST, DASHBOARD_PORT, default_storage, open_storage, shown_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=None,
                        help="a journal file (journal:PATH, *.journal, *.log) or a database URL; default: "
                             "$OPTUNA_STORAGE if set, else journal:<cwd>/mlruns/optuna.journal")
    parser.add_argument("--host", default=DASHBOARD_HOST, help=f"address to listen on (default: {DASHBOARD_HOST})")
    parser.add_argument("--port", type=int, default=DASHBOARD_PORT, help=f"port (default: {DASHBOARD_PORT})")
    args = parser.parse_args(argv)
    storage_url = args.storage or default_storage()
    try:
        import optuna_dashboard
    except ImportError:
        print("error: optuna-dashboard is not installed (`make setup` installs requirements.txt)", file=sys.stderr)
        return 2
    try:
        storage = open_storage(storage_url)
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"[dashboard] studies of {shown_url(storage_url)} on http://{args.host}:{args.port}/dashboard "
          "(Ctrl-C stops it)", flush=True)
    optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
