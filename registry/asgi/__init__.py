"""ASGI pieces the model server runs. `request_guard` imports the standard library and MLflow only:
the server imports it as a top-level module from this folder (`uvicorn --app-dir registry/asgi`), so
that the served model still runs its own logged copy of `registry` and `pipelines`."""
