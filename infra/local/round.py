"""A full local round: the sandbox opens a round, webhooks fire, every node runs and submits."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime

import httpx
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from deployments.catalogue import Node
from deployments.runs import find_run
from flows.errors import NodeError
from flows.tournaments import CLASSIC, Tournament


@dataclass
class NodeRound:
    """How one node did in the round."""

    node: str
    model: str
    round: int
    trigger_id: str | None = None
    flow_run: str | None = None
    state: str = "waiting for the webhook"
    webhook_to_start_s: float | None = None
    run_s: float | None = None
    submission_id: str | None = None

    @property
    def done(self) -> bool:
        return self.submission_id is not None or self.state.startswith(
            ("Failed", "Crashed", "Cancelled")
        )

    def to_json(self) -> dict:
        return asdict(self)


class RoundError(NodeError, RuntimeError):
    """The round could not be opened or followed."""


def open_round(sandbox_url: str, tournament: Tournament = CLASSIC) -> int:
    """Ask the sandbox to open the next round (it then calls every registered webhook)."""
    response = httpx.post(
        sandbox_url.rstrip("/") + "/_sandbox/rounds/open", json={"tournament": int(tournament)}
    )
    if response.status_code != 200:
        raise RoundError(f"The sandbox did not open a round: {response.text[:200]}")
    return int(response.json()["number"])


def follow_round(
    sandbox_url: str,
    nodes: list[Node],
    round_numbers: Mapping[Tournament, int],
    timeout: float,
    on_update: Callable[[list[NodeRound]], None] = lambda rows: None,
    poll: float = 1.0,
) -> list[NodeRound]:
    """Poll the sandbox and Prefect until every node submitted (or failed) for its round."""
    rows = [NodeRound(n.name, n.numerai_model, round_numbers[n.tournament]) for n in nodes]
    base = sandbox_url.rstrip("/")
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as prefect:
        deployments = {n.name: _deployment_id(prefect, n) for n in nodes}
        while True:
            state = httpx.get(f"{base}/_sandbox/state").json()
            model_ids = {m["name"]: m["id"] for m in state["models"]}
            deliveries = httpx.get(f"{base}/_sandbox/webhooks").json()
            submissions = httpx.get(f"{base}/_sandbox/submissions").json()
            for node, row in zip(nodes, rows, strict=True):
                _update(row, node, model_ids, deliveries, submissions, prefect, deployments)
            on_update(rows)
            if all(row.done for row in rows):
                return rows
            if time.monotonic() > deadline:
                for row in rows:
                    if not row.done:
                        row.state = f"timed out ({row.state})"
                return rows
            time.sleep(poll)


def _deployment_id(prefect, node: Node):
    try:
        return prefect.read_deployment_by_name(node.full_name).id
    except ObjectNotFound:
        raise RoundError(f"{node.full_name} is not deployed on the local stack") from None


def _update(row, node, model_ids, deliveries, submissions, prefect, deployments) -> None:
    model_id = model_ids.get(node.numerai_model)
    delivery = next(
        (d for d in deliveries if d["model_id"] == model_id and d["round"] == row.round), None
    )
    if delivery is None:
        return
    row.trigger_id = delivery["trigger_id"]
    if delivery["delivered_at"] is None and delivery["error"]:
        row.state = f"webhook failed: {delivery['error']}"
    run = find_run(prefect, deployments[node.name], row.trigger_id)
    if run is None:
        row.state = "webhook delivered; waiting for the flow run"
        return
    row.flow_run = run.name
    row.state = run.state_name or "?"
    if run.state_type is not None and run.state_type.value in ("FAILED", "CRASHED"):
        message = (run.state.message or "") if run.state else ""
        row.state = f"{row.state}: {message.split(': ', 1)[-1][:160]}"
    fired = datetime.fromisoformat(delivery["fired_at"])
    if run.start_time is not None:
        row.webhook_to_start_s = (run.start_time - fired).total_seconds()
    if run.end_time is not None and run.start_time is not None:
        row.run_s = (run.end_time - run.start_time).total_seconds()
    found = [
        s
        for s in submissions
        if s["model_name"] == node.numerai_model
        and s["round"] == row.round
        and s["trigger_id"] == row.trigger_id
    ]
    if found and run.end_time is not None:
        row.submission_id = found[0]["id"]
