"""The round watchdog: a round about to close without a node's submission is a round at risk."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL

from flows import events
from flows.entrypoints import SIGNALS_FLOW, TOURNAMENT_FLOW
from flows.numerai import RoundInfo
from flows.tournament import TournamentNode, tournament_node
from flows.tournaments import CLASSIC, SIGNALS
from flows.watchdog import WatchedNode, closing_soon, round_watchdog, watched_nodes


def test_only_node_deployments_with_a_model_are_watched():
    found = watched_nodes(
        [
            (TOURNAMENT_FLOW.flow_name, {"node": {"name": "a", "numerai_model": "m1"}}),
            (SIGNALS_FLOW.flow_name, {"node": {"name": "s", "numerai_model": "m2"}}),
            (TOURNAMENT_FLOW.flow_name, {"node": {"name": "no-model"}}),
            (TOURNAMENT_FLOW.flow_name, {}),
            ("round-watchdog", {"node": {"name": "x", "numerai_model": "m"}}),
            (TOURNAMENT_FLOW.flow_name, {"node": {"name": "Bad Name", "numerai_model": "m"}}),
        ]
    )
    assert found == [
        WatchedNode(name="a", model="m1", tournament=CLASSIC),
        WatchedNode(name="s", model="m2", tournament=SIGNALS),
    ]


def test_a_round_is_closing_soon_only_while_open_and_within_the_minutes():
    now = datetime(2026, 12, 1, 13, 40, tzinfo=UTC)
    closes = RoundInfo(1001, None, datetime(2026, 12, 1, 14, 0, tzinfo=UTC))
    assert closing_soon(closes, now, 20)
    assert not closing_soon(closes, now, 19)
    assert not closing_soon(closes, now + timedelta(minutes=21), 60)  # closed already
    assert not closing_soon(RoundInfo(1001, None, None), now, 60)


@pytest.fixture
def node_deployments() -> Iterator[None]:
    """Two node deployments on the test server, as prefect.yaml declares nodes."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(TOURNAMENT_FLOW.flow_name)
        created = [
            client.create_deployment(
                flow_id=flow_id,
                name=f"watched-{model}",
                parameters={"node": {"name": f"watched-{model}", "numerai_model": model}},
                tags=[events.NODE_TAG],
            )
            for model in ("sandbox_model", "other_model")
        ]
    try:
        yield
    finally:
        with get_client(sync_client=True) as client:
            for deployment_id in created:
                client.delete_deployment(deployment_id)


def _at_risk_events(since: datetime) -> list[dict]:
    EventsWorker.drain_all(timeout=10)
    wanted = {"event": {"name": [events.ROUND_AT_RISK]}, "occurred": {"since": since.isoformat()}}
    query = {"filter": wanted, "limit": 50}
    found: list[dict] = []
    for _ in range(20):  # the server stores events shortly after it takes them
        answer = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=query, timeout=10)
        found = answer.json()["events"]
        if found:
            break
        time.sleep(0.5)
    return found


def test_a_model_without_a_submission_before_the_close_is_a_round_at_risk(
    sandbox, node_deployments
):
    since = datetime.now(UTC)
    round_number = sandbox.open_round(window=timedelta(minutes=10))
    tournament_node(
        TournamentNode(name="watched-sandbox_model", numerai_model="sandbox_model",
                       params={"n_estimators": 20}, score_validation=False),
        "on-time",
    )  # fmt: skip

    assert round_watchdog(minutes_before_close=5) == []  # 10 minutes left: not yet
    assert round_watchdog(minutes_before_close=20) == ["watched-other_model"]
    assert round_watchdog(minutes_before_close=20) == ["watched-other_model"]

    (event,) = _at_risk_events(since)  # the second warning is the same event: one alert
    assert event["resource"]["prefect.resource.id"] == "numerai.node.watched-other_model"
    assert event["payload"]["round"] == round_number
    assert event["payload"]["model"] == "other_model"
    assert 8 <= event["payload"]["minutes_left"] <= 10
