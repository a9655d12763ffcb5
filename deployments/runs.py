"""Finding and following a node's flow runs through the Prefect API: states, logs, timings."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import LogSort

from flows.errors import NodeError

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
WAITING = {"SCHEDULED", "PENDING"}


@dataclass(frozen=True)
class RunEvent:
    """Something that happened to a followed flow run: a new state or a log line."""

    kind: str  # "state" or "log"
    text: str
    at: datetime | None
    state: str | None = None


def find_run(client: SyncPrefectClient, deployment_id: UUID, trigger_id: str) -> FlowRun | None:
    """The deployment's flow run whose `trigger_id` parameter is `trigger_id`, if any yet."""
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        limit=200,
    )
    matching = [run for run in runs if run.parameters.get("trigger_id") == trigger_id]
    return min(matching, key=_created) if matching else None


def _created(run: FlowRun) -> datetime:
    """When the server created `run`; a flow run read from the server always has it."""
    assert run.created is not None, f"flow run {run.id} has no creation time"
    return run.created


def runs_for_trigger(
    client: SyncPrefectClient, deployment_id: UUID, trigger_id: str
) -> list[FlowRun]:
    """Every flow run of the deployment started for `trigger_id` (de-duplication shows as one)."""
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        limit=200,
    )
    return [run for run in runs if run.parameters.get("trigger_id") == trigger_id]


def wait_for_run(
    client: SyncPrefectClient,
    deployment_id: UUID,
    trigger_id: str,
    timeout: float,
    poll: float = 0.5,
) -> FlowRun | None:
    """Poll until the trigger's flow run exists; None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        run = find_run(client, deployment_id, trigger_id)
        if run is not None or time.monotonic() > deadline:
            return run
        time.sleep(poll)


def follow(
    client: SyncPrefectClient,
    run_id: UUID,
    *,
    timeout: float,
    start_timeout: float,
    poll: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[RunEvent]:
    """Yield state changes and new log lines until the run ends.

    Raises `RunStuck` when it is still waiting for a worker after `start_timeout` seconds, and
    `RunTimeout` when it has not ended after `timeout` seconds.
    """
    started = clock()
    last_state: str | None = None
    seen_logs = 0
    while True:
        run = client.read_flow_run(run_id)
        state = run.state_type.value if run.state_type else "UNKNOWN"
        if run.state_name != last_state:
            last_state = run.state_name
            yield RunEvent(
                "state", run.state_name or state, run.state.timestamp if run.state else None, state
            )
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
            sort=LogSort.TIMESTAMP_ASC,
            offset=seen_logs,
            limit=200,
        )
        seen_logs += len(logs)
        for log in logs:
            yield RunEvent("log", log.message, log.timestamp)
        if state in TERMINAL:
            return
        waited = clock() - started
        if state in WAITING and waited > start_timeout:
            raise RunStuck(run, start_timeout)
        if waited > timeout:
            raise RunTimeout(run, timeout)
        time.sleep(poll)


class RunStuck(NodeError, RuntimeError):
    """No worker picked the run up."""

    def __init__(self, run: FlowRun, waited: float):
        self.run = run
        super().__init__(
            f"Flow run {run.name} is still {run.state_name} after {waited:.0f} s: no worker "
            f"is taking runs from work pool '{run.work_pool_name}'. Start one with "
            f"`prefect worker start --pool {run.work_pool_name}` (or `numerai-nodes up`)."
        )


class RunTimeout(NodeError, TimeoutError):
    """The run did not end in time."""

    def __init__(self, run: FlowRun, waited: float):
        self.run = run
        super().__init__(
            f"Flow run {run.name} is still {run.state_name} after {waited:.0f} s; it goes on "
            "in Prefect. Follow it in the Prefect UI."
        )
