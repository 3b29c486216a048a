"""Requests that arrive while the model is busy run together in its next call.

MLflow's scoring server calls `predict` from a thread per request, so under load several
requests wait on the same worker, and uvicorn spreads keep-alive connections unevenly over its
workers (a burst of connections is often accepted by one). Running the waiting requests as one
batch turns that queue into throughput: on a CPU, generating for 8 prompts at once costs far less
than 8 times one. The first request on an idle model runs at once, alone: batching never adds
latency when there is no queue.

Only one model call runs at a time per process, which also keeps concurrent requests from
sharing (and oversubscribing) the worker's torch threads. Written here because MLflow's pyfunc
server has no request batching of its own.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class _Job:
    rows: list
    key: Hashable
    results: list | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class MicroBatcher:
    """`submit(rows, key)` returns `run(all_rows, key)`'s results for `rows`, where `all_rows`
    joins the rows of every waiting request with the same key (say, the same generation params),
    oldest first, up to `max_rows` (a single larger request still runs whole). `run` must return
    one result per row, in order."""

    def __init__(self, run: Callable[[list, Hashable], list], max_rows: int):
        self.run, self.max_rows = run, max_rows
        self.queue: list[_Job] = []
        self.running = False
        self.changed = threading.Condition()

    def submit(self, rows: list, key: Hashable = None) -> list[Any]:
        job = _Job(list(rows), key)
        with self.changed:
            self.queue.append(job)
        while True:
            with self.changed:
                while self.running and not job.done:
                    self.changed.wait()
                if job.done:
                    break
                # The model is free and this request is still waiting: this thread runs the next
                # batch (the oldest requests, not necessarily its own) and then looks again.
                self.running = True
                batch = self._take_batch()
            try:
                self._run(batch)
            finally:
                with self.changed:
                    self.running = False
                    self.changed.notify_all()
        if job.error is not None:
            raise job.error
        return job.results

    def _take_batch(self) -> list[_Job]:
        first = self.queue[0]
        batch, rows = [], 0
        for job in self.queue:
            if job.key == first.key and (not batch or rows + len(job.rows) <= self.max_rows):
                batch.append(job)
                rows += len(job.rows)
        self.queue = [job for job in self.queue if job not in batch]
        return batch

    def _run(self, batch: list[_Job]):
        try:
            self._run_together(batch)
        except Exception as err:
            if len(batch) == 1:
                batch[0].error = err
            else:
                # One bad request must not fail the others that happened to share its batch.
                for job in batch:
                    try:
                        self._run_together([job])
                    except Exception as own_err:
                        job.error = own_err
        for job in batch:
            job.done = True

    def _run_together(self, batch: list[_Job]):
        rows = [row for job in batch for row in job.rows]
        results = self.run(rows, batch[0].key)
        if len(results) != len(rows):
            raise RuntimeError(f"the model returned {len(results)} results for {len(rows)} rows")
        start = 0
        for job in batch:
            job.results = list(results[start : start + len(job.rows)])
            start += len(job.rows)
