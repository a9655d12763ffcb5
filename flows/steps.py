"""Which step a node run failed at: a task hook marks the exception with its task's name.

Every task of a node flow has `on_failure=[note_failed_step]`. When a task fails for good (no
retry left), Prefect calls the hook with the task's final state, whose exception is the one the
flow then sees; the innermost task's hook runs first, so a step called inside another (the
downloads inside `train`) keeps its own name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import TaskRun
    from prefect.states import State

_STEP_ATTRIBUTE = "numerai_step"
# The step of a failure raised by the flow itself, outside any task (its settings, its restarts).
FLOW_STEP = "start"


def note_failed_step(task: Task, task_run: TaskRun, state: State) -> None:
    """Mark the failed task's exception with the task's name, unless an inner task did."""
    failure = state.result(raise_on_failure=False)
    if isinstance(failure, BaseException):
        mark_step(failure, task.name)


def mark_step(failure: BaseException, step: str) -> None:
    """Note that `failure` came from `step`, unless a step is noted already."""
    if not hasattr(failure, _STEP_ATTRIBUTE):
        setattr(failure, _STEP_ATTRIBUTE, step)


def failed_step(failure: BaseException) -> str:
    """The step `failure` came from: the task that raised it, or FLOW_STEP."""
    return str(getattr(failure, _STEP_ATTRIBUTE, FLOW_STEP))
