"""Reading what a flow run did from the Prefect API: its task states and its artifacts."""

from __future__ import annotations

import time

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import Artifact, TaskRun
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL


def task_runs(flow_state, timeout: float = 10) -> list[TaskRun]:
    """Every task run of the flow run that ended in `flow_state`, each in its final state.

    The server records task runs from the events the run sent, after the run has ended: the
    events are sent first, then read until no recorded task run is still short of its end.
    """
    run_id = flow_state.state_details.flow_run_id
    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
            settled = all(run.state and run.state.is_final() for run in runs)
            if settled or time.monotonic() > deadline:
                return runs
            time.sleep(0.2)


def task_states(flow_state) -> dict[str, list[str]]:
    """Task name -> state names (e.g. {"train": ["Cached"]}), for one flow run."""
    states: dict[str, list[str]] = {}
    for run in task_runs(flow_state):
        state = run.state
        assert state is not None and state.name is not None, f"task run {run.name} has no state"
        states.setdefault(run.name.rsplit("-", 1)[0], []).append(state.name)
    return states


def artifacts(flow_state) -> dict[str, Artifact]:
    """The flow run's keyed artifacts, by key."""
    run_id = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {a.key: a for a in found if a.key}


def all_artifacts(flow_state) -> list[Artifact]:
    """Every artifact of the flow run, keyed or not (progress artifacts have no key)."""
    run_id = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )


def run_events(
    run_id: str, timeout: float = 20, prefixes: tuple[str, ...] = ("numerai.",)
) -> list[dict]:
    """The project's events that the flow run sent (the server stores them shortly after)."""
    EventsWorker.drain_all(timeout=10)
    query = {
        "filter": {
            "event": {"prefix": list(prefixes)},
            "related": {"id": [f"prefect.flow-run.{run_id}"]},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=query, timeout=10)
        answer.raise_for_status()
        found = answer.json()["events"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
