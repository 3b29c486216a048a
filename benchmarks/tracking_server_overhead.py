"""What the team tracking server (PostgreSQL + `mlflow server` with basic auth, `make server`)
costs against the local SQLite default: per logged metric batch, and for a whole demo grid.

    make server && python benchmarks/tracking_server_overhead.py          # ~12 min here
    python benchmarks/tracking_server_overhead.py --batches 20 --skip-grid  # smoke

- metric batch: `MlflowClient.log_batch` of `--metrics` metrics at one step, as the training loop
  logs them, `--batches` times into one run; the stores alternate (SQLite, server, server,
  SQLite, ...) `--repeats` times and the medians are reported.
- grid: `python -m pipelines.compare experiments/dialogsum_demo.yaml` with a fixed step count
  (`--grid-steps`, no time cap, so both stores do the same work), once per store, in sequence.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from common import REPO, machine, write_result
from mlflow import MlflowClient
from mlflow.entities import Metric

from server.__main__ import client_env, servers


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--metrics", type=int, default=12, help="metrics per batch (a training log line has ~12)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grid-steps", type=int, default=12)
    ap.add_argument("--skip-grid", action="store_true")
    return ap.parse_args()


def server_env() -> dict[str, str]:
    settings, postgres, mlflow_server = servers()
    if not (postgres.running() and mlflow_server.healthy()):
        raise SystemExit("error: the team server is not running: `make server` first")
    return {**client_env(settings, postgres), "MLFLOW_TRACKING_USERNAME": mlflow_server.credentials.admin_user,
            "MLFLOW_TRACKING_PASSWORD": mlflow_server.credentials.admin_password}


def ms_per_batch(uri: str, batches: int, metrics: int) -> float:
    client = MlflowClient(uri)
    experiment = client.create_experiment(f"overhead_{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment).info.run_id
    started = time.perf_counter()
    for step in range(batches):
        now = int(time.time() * 1000)
        client.log_batch(run, metrics=[Metric(f"m{i}", float(step + i), now, step) for i in range(metrics)])
    elapsed = time.perf_counter() - started
    client.set_terminated(run)
    return elapsed / batches * 1000


def grid_seconds(env: dict[str, str], steps: int) -> float:
    overrides = [f"train.max_steps={steps}", "train.max_minutes=null", "train.epochs=100", "registry.promote=false"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipelines.compare", "experiments/dialogsum_demo.yaml",
                           "--set", " ".join(overrides)], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: the grid failed against {env['MLFLOW_TRACKING_URI']}: {done.stderr[-500:]}")
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    remote = server_env()
    os.environ.update({k: v for k, v in remote.items() if k.startswith("MLFLOW_TRACKING_") and k != "MLFLOW_TRACKING_URI"})
    os.environ["PGPASSFILE"] = remote["PGPASSFILE"]
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{tmp}/mlflow.db"
        ms_per_batch(sqlite, 5, args.metrics)  # creates the schema outside the timing
        timings = {"sqlite": [], "server": []}
        for repeat in range(args.repeats):
            order = ("sqlite", "server") if repeat % 2 == 0 else ("server", "sqlite")
            for store in order:
                uri = sqlite if store == "sqlite" else remote["MLFLOW_TRACKING_URI"]
                timings[store].append(ms_per_batch(uri, args.batches, args.metrics))
                print(f"[overhead] {store}: {timings[store][-1]:.1f} ms per batch of {args.metrics}", flush=True)
        result = {"machine": machine(), "batches": args.batches, "metrics_per_batch": args.metrics,
                  "ms_per_batch": {k: statistics.median(v) for k, v in timings.items()}, "all_ms": timings}
        if not args.skip_grid:
            grid = {"sqlite": grid_seconds({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/grid.db"}, args.grid_steps),
                    "server": grid_seconds(remote, args.grid_steps)}
            result["grid_seconds"] = grid
            result["grid_overhead"] = grid["server"] / grid["sqlite"] - 1
            print(f"[overhead] demo grid at {args.grid_steps} steps: SQLite {grid['sqlite']:.0f} s, "
                  f"server {grid['server']:.0f} s ({result['grid_overhead']:+.1%})", flush=True)
    write_result("tracking_server_overhead", result)


if __name__ == "__main__":
    main()
