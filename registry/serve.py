"""Serve a logged or registered model with MLflow's own scoring server, behind the request guard
(`registry/asgi/request_guard.py`): what `mlflow models serve --env-manager local` runs, plus a 415
for a request without `Content-Type` and a 400 for JSON nested too deep, where MLflow answers 500.

    python -m registry.serve -m models:/dialogue-summarizer@champion --port 5001 --workers 2

Workers split the cores as under `mlflow models serve` (MLFLOW_MODELS_WORKERS is set for them);
`MLFLOW_PYFUNC_INFERENCE_CONFIG` changes the request limits the same way. uvicorn runs from this
interpreter (`python -m uvicorn`), so the venv need not be on PATH.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

GUARD_DIR = Path(__file__).resolve().parent / "asgi"


def uvicorn_command(model_path: str, host: str, port: int, workers: int, timeout: int) -> tuple[list[str], dict]:
    """(argv, environment) of the server process for a model already downloaded to `model_path`."""
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.pyfunc import scoring_server

    env = {**os.environ, scoring_server._SERVER_MODEL_PATH: model_path, "MLFLOW_MODELS_WORKERS": str(workers),
           MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name: str(timeout)}
    argv = [sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(GUARD_DIR), "--host", host,
            "--port", str(port), "--workers", str(workers), "request_guard:served_app"]
    return argv, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m registry.serve", description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model-uri", required=True, help="models:/<name>@<alias>, runs:/..., or a folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("MLFLOW_MODELS_WORKERS", "1")))
    parser.add_argument("--timeout", type=int, default=60, help="seconds a request may take before a 504")
    args = parser.parse_args(argv)
    import mlflow

    from pipelines.errors import first_line
    from pipelines.tracking import setup_tracking

    setup_tracking()  # MLFLOW_TRACKING_URI, else ./mlruns, as every entry point
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=args.model_uri)
    except Exception as exc:  # noqa: BLE001 - MlflowException, OSError, ...: the URI names nothing here
        print(f"error: cannot load '{args.model_uri}': {first_line(exc)}", file=sys.stderr)
        return 2
    command, env = uvicorn_command(path, args.host, args.port, max(1, args.workers), args.timeout)
    print(f"[serve] {args.model_uri} ({path}) on http://{args.host}:{args.port}, {args.workers} worker(s)", flush=True)
    os.execve(sys.executable, command, env)
    return 0  # not reached: the server replaced this process


if __name__ == "__main__":
    sys.exit(main())
