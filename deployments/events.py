"""The webhook event contract: one Prefect event, with a deterministic id, per webhook call."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.events import (
    EVENT_NAME,
    NODE_NAME_PATTERN,
    RESOURCE_PREFIX,
    TRIGGER_ID_LABEL,
    check_node_name,
    node_resource_id,
)

# The contract's names live in flows/events.py (the flows emit events too); these re-exports keep
# the gateway's, the template's and the catalogue's imports in one place.
__all__ = [
    "EVENT_ID_NAMESPACE",
    "EVENT_NAME",
    "MAX_TRIGGER_ID_LENGTH",
    "NODE_NAME_PATTERN",
    "RESOURCE_PREFIX",
    "TRIGGER_ID_LABEL",
    "WebhookBody",
    "build_event",
    "check_node_name",
    "describe_validation_error",
    "event_id",
    "node_resource_id",
]

MAX_TRIGGER_ID_LENGTH = 128
# Fixed forever: changing it changes every event id, and with it the de-duplication of deliveries.
EVENT_ID_NAMESPACE = uuid.UUID("df6f9955-1fb6-5b3b-9953-906052c55f84")


class WebhookBody(BaseModel):
    """The fields of Numerai's webhook body that this project reads; others are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    triggerId: str = Field(
        min_length=1,
        max_length=MAX_TRIGGER_ID_LENGTH,
        description="Numerai's id of this webhook call; the submission quotes it back.",
    )
    roundNumber: int | None = Field(None, description="The round that opened.")
    dataVersion: str | None = Field(None, description="The dataset version, e.g. `v5.2`.")
    isTest: bool | None = Field(None, description="True when the call is a test trigger.")


def event_id(node: str, trigger_id: str) -> uuid.UUID:
    """The event id of one delivery: the same node and trigger id always give the same id."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{node}:{trigger_id}")


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each offending field and its problem, e.g. `triggerId: Field required`."""
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{field}: {item['msg']}")
    return "; ".join(problems)


def build_event(node: str, body: dict[str, Any], occurred: datetime) -> dict[str, Any]:
    """The JSON of the Prefect event for one webhook call, as `POST /api/events` accepts it.

    Raises ValueError (a pydantic ValidationError) when the body breaks the contract.
    """
    if occurred.tzinfo is None:
        raise ValueError("occurred must be timezone-aware")
    parsed = WebhookBody.model_validate(body)
    return {
        "id": str(event_id(node, parsed.triggerId)),
        "occurred": occurred.isoformat(),
        "event": EVENT_NAME,
        "resource": {
            "prefect.resource.id": node_resource_id(node),
            TRIGGER_ID_LABEL: parsed.triggerId,
        },
        "related": [],
        "payload": dict(body),
    }
