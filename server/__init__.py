"""The team's tracking server: one PostgreSQL (with pgvector) under the project, `mlflow server`
on it with its artifact proxy and basic-auth app, and the same PostgreSQL for Optuna studies.

    python -m server start      # or `make server`; `python -m server run` stays in the foreground
    python -m server env        # the client settings for this shell (no password)
    python -m server stop

Everything lives in `.server/` under the project (data, logs, credentials). See the README's
"A tracking server for a team".
"""
