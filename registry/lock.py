"""A registry-wide mutex for promotion, so two grids cannot interleave the read-compare-set of
`@champion` (each would read the old champion, and the last to write would win, better or not).

MLflow has no compare-and-set on aliases, but creating a registered model is atomic in every
store (a unique name in SQLite and PostgreSQL alike, through the server or not): holding the lock
is having created `<name>.promotion-lock`. A holder that died leaves it behind; one older than
`stale_after_s` (by the store's own clock) is broken.
"""
from __future__ import annotations

import os
import random
import socket
import time
from contextlib import contextmanager

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.errors import PlatformError

LOCK_SUFFIX = ".promotion-lock"


def _held(client: MlflowClient, lock: str):
    try:
        return client.get_registered_model(lock)
    except MlflowException:
        return None  # released between our attempt and this look


@contextmanager
def promotion_lock(name: str, timeout_s: float = 300, stale_after_s: float = 600):
    client = MlflowClient()
    lock, owner = name + LOCK_SUFFIX, f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(lock, tags={"owner": owner},
                                           description=f"held while {owner} promotes a version of {name}")
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        held = _held(client, lock)
        if held is not None:
            age_s = time.time() - held.creation_timestamp / 1000
            if age_s > stale_after_s:
                print(f"[promote] breaking the stale lock {lock} of {held.tags.get('owner')} ({age_s:.0f} s old)",
                      flush=True)
                client.delete_registered_model(lock)
                continue
            if time.monotonic() > deadline:
                raise PlatformError(f"registered model {name}: promotion lock held by {held.tags.get('owner')} "
                                    f"for {age_s:.0f} s; retry, or delete '{lock}' if its holder is gone")
        time.sleep(0.2 + random.random() * 0.3)  # jittered, so waiters do not retry in step
    try:
        yield
    finally:
        client.delete_registered_model(lock)
