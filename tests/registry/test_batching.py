"""Requests that queue while the model runs share its next call; each gets its own results."""
from __future__ import annotations

import threading
import time

import pytest

from registry.batching import MicroBatcher


class GatedModel:
    """Uppercases rows; its first call blocks until released, so others can queue behind it."""

    def __init__(self):
        self.calls: list[tuple[list[str], object]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, rows, key):
        with self.lock:
            self.calls.append((list(rows), key))
            first = len(self.calls) == 1
        if first:
            assert self.release.wait(10)
        if any(r == "boom" for r in rows):
            raise ValueError("boom in the batch")
        return [f"{r.upper()}/{key}" for r in rows]


def submit_in_threads(batcher, requests, queued_before_release, model):
    """Submits the first request, waits until it runs, queues the rest, then releases the model."""
    results, errors = {}, {}

    def call(i, rows, key):
        try:
            results[i] = batcher.submit(rows, key)
        except Exception as err:
            errors[i] = err

    threads = [threading.Thread(target=call, args=(i, rows, key)) for i, (rows, key) in enumerate(requests)]
    threads[0].start()
    while not model.calls:
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    while len(batcher.queue) < queued_before_release:
        time.sleep(0.001)
    model.release.set()
    for t in threads:
        t.join(10)
    return results, errors


def test_a_request_on_an_idle_model_runs_at_once_alone():
    model = GatedModel()
    model.release.set()
    assert MicroBatcher(model, max_rows=8).submit(["a", "b"], 3) == ["A/3", "B/3"]
    assert model.calls == [(["a", "b"], 3)]


def test_requests_queued_behind_a_running_call_share_the_next_one_and_get_their_own_results():
    model = GatedModel()
    batcher = MicroBatcher(model, max_rows=8)
    requests = [(["first"], 1), (["x"], 1), (["y", "z"], 1), (["w"], 1)]
    results, errors = submit_in_threads(batcher, requests, queued_before_release=3, model=model)
    assert not errors
    assert results == {0: ["FIRST/1"], 1: ["X/1"], 2: ["Y/1", "Z/1"], 3: ["W/1"]}
    assert len(model.calls) == 2 and sorted(model.calls[1][0]) == ["w", "x", "y", "z"]


def test_different_keys_and_the_row_cap_split_batches():
    model = GatedModel()
    batcher = MicroBatcher(model, max_rows=3)
    requests = [(["first"], 1), (["a", "b"], 1), (["c"], 2), (["d", "e"], 1), (["f", "g", "h", "i"], 1)]
    results, errors = submit_in_threads(batcher, requests, queued_before_release=4, model=model)
    assert not errors and results[2] == ["C/2"] and results[4] == ["F/1", "G/1", "H/1", "I/1"]
    batches = model.calls[1:]
    key_of = {row: key for rows, key in requests for row in rows}
    assert all(key_of[row] == key for rows, key in batches for row in rows)
    assert all(len(rows) <= 3 for rows, _ in batches if rows != ["f", "g", "h", "i"])  # one big request runs whole
    assert sorted(r for rows, _ in batches for r in rows) == ["a", "b", "c", "d", "e", "f", "g", "h", "i"]


def test_a_failing_request_fails_alone_even_when_it_shared_a_batch():
    model = GatedModel()
    batcher = MicroBatcher(model, max_rows=8)
    requests = [(["first"], 1), (["ok"], 1), (["boom"], 1), (["fine"], 1)]
    results, errors = submit_in_threads(batcher, requests, queued_before_release=3, model=model)
    assert set(errors) == {2} and "boom" in str(errors[2])
    assert results == {0: ["FIRST/1"], 1: ["OK/1"], 3: ["FINE/1"]}


def test_a_model_returning_the_wrong_number_of_results_is_an_error():
    batcher = MicroBatcher(lambda rows, key: rows[:-1], max_rows=8)
    with pytest.raises(RuntimeError, match="1 results for 2 rows"):
        batcher.submit(["a", "b"])
