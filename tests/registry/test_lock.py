"""The promotion lock: one holder at a time, a dead holder's lock broken, and concurrent
promotions that end on the best run whatever order they interleave in."""
from __future__ import annotations

import threading

import pytest
from mlflow import MlflowClient

from pipelines.errors import PlatformError
from registry.lock import LOCK_SUFFIX, promotion_lock
from registry.promote import promote
from tests.registry.test_promote import finished_run


def test_a_second_holder_waits_then_names_the_first(tracking):
    held = pytest.raises(PlatformError, match=r"registered model m: promotion lock held by .+:\d+")
    with promotion_lock("m"), held, promotion_lock("m", timeout_s=0.5):
        pass
    with promotion_lock("m", timeout_s=0.5):  # released: free again
        pass
    assert MlflowClient().search_registered_models() == []


def test_a_lock_left_by_a_dead_holder_is_broken_once_stale(tracking, capsys):
    MlflowClient().create_registered_model("m" + LOCK_SUFFIX, tags={"owner": "gone:1"})
    with promotion_lock("m", timeout_s=5, stale_after_s=0):
        pass
    assert "breaking the stale lock m.promotion-lock of gone:1" in capsys.readouterr().out


def test_concurrent_promotions_end_on_the_best_run(tracking):
    runs = [finished_run(value) for value in (0.31, 0.42, 0.27, 0.39)]
    errors = []

    def promote_one(run_id, uri):
        try:
            promote(model_uri=uri, run_id=run_id, name="m", metric="rougeL")
        except Exception as exc:  # noqa: BLE001 - collected and asserted empty below
            errors.append(exc)

    threads = [threading.Thread(target=promote_one, args=run) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    client = MlflowClient()
    champion = client.get_model_version_by_alias("m", "champion")
    assert champion.tags["metric.rougeL"] == "0.42"
    assert len(client.search_model_versions("name='m'")) == 4
