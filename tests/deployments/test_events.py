"""The webhook event contract: ids, resource ids, body validation and the event JSON."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from prefect.server.events.schemas.events import Event as ServerEvent
from pydantic import ValidationError

from deployments.events import (
    EVENT_ID_NAMESPACE,
    EVENT_NAME,
    WebhookBody,
    build_event,
    check_node_name,
    describe_validation_error,
    event_id,
    node_resource_id,
)

OCCURRED = datetime(2025, 1, 3, 13, 0, tzinfo=UTC)


def test_event_id_is_deterministic_uuid5() -> None:
    assert event_id("alpha", "t-1") == event_id("alpha", "t-1")
    assert event_id("alpha", "t-1") == uuid.uuid5(EVENT_ID_NAMESPACE, "alpha:t-1")
    assert event_id("alpha", "t-1").version == 5


def test_event_id_differs_by_node_and_trigger() -> None:
    ids = {event_id("alpha", "t-1"), event_id("beta", "t-1"), event_id("alpha", "t-2")}
    assert len(ids) == 3


def test_event_id_namespace_is_pinned() -> None:
    # Changing the namespace silently breaks de-duplication across versions.
    assert str(EVENT_ID_NAMESPACE) == "df6f9955-1fb6-5b3b-9953-906052c55f84"
    assert str(event_id("alpha", "t-1")) == "2a183f0a-bc8e-5d38-aae9-5df763e5c8dc"


def test_node_resource_id() -> None:
    assert node_resource_id("tournament-lgbm") == "numerai.node.tournament-lgbm"


@pytest.mark.parametrize("bad", ["", "Upper", "-lead", "has space", "a/b", "x" * 64, "{{ x }}"])
def test_invalid_node_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="Invalid node name"):
        check_node_name(bad)


def test_body_keeps_known_fields_and_ignores_unknown() -> None:
    body = WebhookBody.model_validate(
        {"triggerId": "t", "roundNumber": 900, "dataVersion": "v5.2", "isTest": True, "x": 1}
    )
    assert (body.triggerId, body.roundNumber, body.dataVersion, body.isTest) == (
        "t",
        900,
        "v5.2",
        True,
    )
    assert not hasattr(body, "x")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "triggerId"),
        ({"triggerId": ""}, "triggerId"),
        ({"triggerId": "t" * 129}, "triggerId"),
        ({"triggerId": 7}, "triggerId"),
        ({"triggerId": None}, "triggerId"),
        ({"triggerId": "t", "roundNumber": "900"}, "roundNumber"),
        ({"triggerId": "t", "roundNumber": True}, "roundNumber"),
        ({"triggerId": "t", "isTest": "yes"}, "isTest"),
        ({"triggerId": "t", "dataVersion": 5}, "dataVersion"),
    ],
)
def test_body_validation_names_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookBody.model_validate(body)
    assert describe_validation_error(caught.value).startswith(f"{field}:")


def test_trigger_id_of_128_characters_is_accepted() -> None:
    assert WebhookBody.model_validate({"triggerId": "t" * 128}).triggerId == "t" * 128


def test_build_event_shape() -> None:
    body = {"triggerId": "trig-1", "roundNumber": 901, "modelId": "m-1", "extra": {"a": [1]}}
    event = build_event("alpha", body, OCCURRED)
    assert event == {
        "id": str(event_id("alpha", "trig-1")),
        "occurred": "2025-01-03T13:00:00+00:00",
        "event": EVENT_NAME,
        "resource": {
            "prefect.resource.id": "numerai.node.alpha",
            "numerai.trigger-id": "trig-1",
        },
        "related": [],
        "payload": body,
    }
    assert event["payload"] is not body


def test_build_event_is_accepted_by_prefects_server_schema() -> None:
    event = ServerEvent.model_validate(build_event("alpha", {"triggerId": "t"}, OCCURRED))
    assert event.id == event_id("alpha", "t")
    assert event.resource.id == "numerai.node.alpha"


def test_build_event_refuses_bad_bodies_and_naive_times() -> None:
    with pytest.raises(ValueError):
        build_event("alpha", {"roundNumber": 1}, OCCURRED)
    with pytest.raises(ValueError):
        build_event("alpha", ["triggerId"], OCCURRED)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone"):
        build_event("alpha", {"triggerId": "t"}, datetime(2025, 1, 3))
