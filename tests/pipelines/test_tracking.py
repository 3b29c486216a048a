"""The store queries resume and promote share: every matching run, a page at a time."""
from __future__ import annotations

import mlflow
from mlflow import MlflowClient

from pipelines.tracking import paged_runs, quoted


def test_paged_runs_returns_every_match_across_pages_and_only_matches(tracking):
    experiment = mlflow.create_experiment("paged")
    for i in range(5):
        with mlflow.start_run(experiment_id=experiment):
            mlflow.set_tag("cell_key", "it's" if i % 2 == 0 else "other")
    client = MlflowClient()
    query = "tags.cell_key = " + quoted("it's")  # a quote inside: the filter's grammar has no escapes
    found = list(paged_runs(client, [experiment], query, page_size=2))
    assert len(found) == 3 and {r.data.tags["cell_key"] for r in found} == {"it's"}
    assert len({r.info.run_id for r in found}) == 3
