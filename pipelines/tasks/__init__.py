"""The task registry: `spec.task` is looked up here, once, and nowhere else is a task named.

Adding a task: a module with a class implementing `pipelines.tasks.base.Task`, one line in
`TASKS`, its spec section if it has one, and its tests.
"""
from __future__ import annotations

from pipelines.errors import PlatformError
from pipelines.tasks.base import Task
from pipelines.tasks.classification import ClassificationTask
from pipelines.tasks.language_modeling import LanguageModelingTask
from pipelines.tasks.summarization import SummarizationTask

TASKS: dict[str, Task] = {task.name: task for task in (SummarizationTask(), ClassificationTask(),
                                                        LanguageModelingTask())}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise PlatformError(f"unknown task '{name}' (known: {', '.join(TASKS)})") from None
