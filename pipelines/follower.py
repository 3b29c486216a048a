"""What a rank other than 0 does under torchrun: train each cell rank 0 sends, in step with it.

Rank 0 runs the entry point as one process would (`pipelines.cell.run_cell` sends it each cell it
trains); the others build the same model the same way and train it beside rank 0 through
`pipelines.train.train`, then wait for the next cell. They log nothing: the runs, metrics,
checkpoints and models are rank 0's. A cell that fails on a follower stops the job (where one
process would go on to the next cell): the ranks could not be sure to be in step again.
"""
from __future__ import annotations

import sys

from pipelines import distributed
from pipelines.cell import _fit, _with_instruction, cell_params  # the cell's own steps
from pipelines.cell_resume import journal_and_checkpoints
from pipelines.resources import release_freed_memory
from pipelines.tasks import get_task


def follow_cells() -> int:
    """Train the cells rank 0 sends until it sends none; the process's exit code."""
    try:
        while (cell := distributed.receive()) is not None:
            _follow(*cell)
    except distributed.RankFailure as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


def _follow(spec, model_src, dataset, method, splits, directory) -> None:
    params = cell_params(spec, model_src, dataset, method)
    journal, checkpoints = journal_and_checkpoints(spec, params, splits, directory, leads=False)
    spec = _with_instruction(spec, dataset)
    try:
        _fit(get_task(spec.task), spec, model_src, method, splits, splits.eval, distributed.device(spec.train.device),
             journal, checkpoints)
    except distributed.StoppedByMain:
        pass  # a pruned trial, or a validation that failed: rank 0's run says which
    except distributed.RankFailure:
        raise
    except Exception as exc:  # the job stops: rank 0 names this rank and its error
        raise distributed.failed_alone(exc) from exc
    finally:
        release_freed_memory()
