"""The round watchdog: shortly before a round closes, is every node's model submitted?

The webhook alert (deployments/alerts.py) hears of a webhook that led to no submission; a round
whose webhook never came leaves no event to hear. This flow, run on a schedule, asks Numerai
instead: for each node deployment on the Prefect API (tagged `numerai-node`), when its round
closes within `minutes_before_close` and Numerai lists no submission of the node's model for it,
it sends `numerai.round.at-risk` on the node's resource, which an alert automation turns into a
message. The event id is fixed per node and round, so a watchdog that runs every few minutes
alerts once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from prefect import flow, get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
from prefect.events import emit_event
from pydantic import BaseModel, Field

from flows import events
from flows.entrypoints import NODE_FLOWS
from flows.keys import connect
from flows.numerai import RoundInfo
from flows.steps import note_failed_step
from flows.tournaments import Tournament

# Fixed forever: the same node and round always give the same at-risk event id.
_AT_RISK_NAMESPACE = uuid.UUID("7c1c4a52-3f7e-5d0e-9a43-5b1f2f9e8d61")


class WatchedNode(BaseModel):
    """A node the watchdog checks: its name, its Numerai model and its tournament."""

    name: str = Field(description="The node's name, as its events name it.")
    model: str = Field(description="The Numerai model it submits as.")
    tournament: Tournament = Field(description="Its tournament.")


def minutes_left(current: RoundInfo, now: datetime) -> float | None:
    """Minutes until the round stops taking submissions (None: Numerai gave no close)."""
    if current.close_staking_time is None:
        return None
    return (current.close_staking_time - now).total_seconds() / 60


def closing_soon(current: RoundInfo, now: datetime, minutes_before_close: float) -> bool:
    """Whether the round is open and closes within `minutes_before_close`."""
    left = minutes_left(current, now)
    return left is not None and 0 < left <= minutes_before_close


def at_risk_event_id(node: str, round_number: int) -> uuid.UUID:
    return uuid.uuid5(_AT_RISK_NAMESPACE, f"{node}:{round_number}")


def watched_nodes(deployments: Iterable[tuple[str, dict]]) -> list[WatchedNode]:
    """The nodes of (flow name, parameters) pairs of deployments; other flows are not nodes."""
    flows = {declared.flow_name: declared for declared in NODE_FLOWS.values()}
    found = {}
    for flow_name, parameters in deployments:
        declared, node = flows.get(flow_name), parameters.get("node")
        if declared is None or not isinstance(node, dict) or not node.get("numerai_model"):
            continue
        name = str(node.get("name") or "")
        if events.NODE_NAME_PATTERN.fullmatch(name):
            found[name] = WatchedNode(
                name=name, model=str(node["numerai_model"]), tournament=declared.tournament
            )
    return list(found.values())


@task(name="find-nodes", cache_policy=NO_CACHE, on_failure=[note_failed_step])
def find_nodes() -> list[WatchedNode]:
    """The node deployments on this Prefect API (tagged `numerai-node`)."""
    tagged = DeploymentFilter(tags=DeploymentFilterTags(all_=[events.NODE_TAG]))
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(deployment_filter=tagged)
        flow_ids = {deployment.flow_id for deployment in deployments}
        flow_names = {flow_id: client.read_flow(flow_id).name for flow_id in flow_ids}
    return watched_nodes((flow_names[d.flow_id], d.parameters) for d in deployments)


@task(name="check-round", cache_policy=NO_CACHE, on_failure=[note_failed_step])
def check_round(
    tournament: Tournament, nodes: list[WatchedNode], minutes_before_close: float
) -> list[str]:
    """Send `numerai.round.at-risk` for each node whose model has not submitted for a round that
    closes soon; returns those nodes."""
    client = connect(tournament)
    current, now = client.current_round(), datetime.now(UTC)
    left = minutes_left(current, now)
    if not closing_soon(current, now, minutes_before_close) or left is None:
        get_run_logger().info("%s round %s does not close soon", tournament.label, current.number)
        return []
    late = []
    for node in nodes:
        submitted = client.submissions(client.model_id(node.model))
        if any(submission.round == current.number for submission in submitted):
            continue
        late.append(node.name)
        get_run_logger().warning(
            "Round %s closes in %.0f min and model %s (node %s) has not submitted",
            current.number,
            left,
            node.model,
            node.name,
        )
        emit_event(
            event=events.ROUND_AT_RISK,
            resource=events.node_resource(node.name, model=node.model, round=current.number),
            id=at_risk_event_id(node.name, current.number),
            payload={
                "node": node.name,
                "model": node.model,
                "round": current.number,
                "closes_at": f"{current.close_staking_time:%Y-%m-%d %H:%M} UTC",
                "minutes_left": round(left),
                "detail": "Numerai's webhook may not have come, or the node's run has not "
                "submitted yet.",
            },
        )
    return late


@flow(name="round-watchdog", log_prints=True)
def round_watchdog(minutes_before_close: float = 20) -> list[str]:
    """Round watchdog: warn (a `numerai.round.at-risk` event, which alerts pick up) about each
    node whose Numerai model has not submitted for a round that closes within
    `minutes_before_close` minutes. Run it on a schedule, e.g. every 10 minutes."""
    nodes = find_nodes()
    late: list[str] = []
    for tournament in sorted({node.tournament for node in nodes}):
        group = [node for node in nodes if node.tournament == tournament]
        late += check_round(tournament, group, minutes_before_close)
    return late
