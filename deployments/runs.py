"""Finding a node's flow runs through the Prefect API, and what keeps one from ending."""

from __future__ import annotations

import time
from datetime import datetime
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun

from flows.errors import NodeError

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
WAITING = {"SCHEDULED", "PENDING"}


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
