"""The Prefect Cloud webhook template renders Numerai's body into the same event as the gateway."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from prefect.server.utilities.user_templates import render_user_template_sync

from deployments.cloud_webhook import render_template, upsert_cloud_webhook, webhook_name
from deployments.events import build_event
from flows.errors import ConfigurationError

WORKSPACE = f"https://api.prefect.cloud/api/accounts/{uuid.uuid4()}/workspaces/{uuid.uuid4()}"


def _plain_jinja(template: str, context: dict[str, Any]) -> str:
    return (
        ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
        .from_string(template)
        .render(context)
    )


# Prefect's own sandbox for user templates is the closest open-source relative of Cloud's renderer.
RENDERERS: list[Callable[[str, dict[str, Any]], str]] = [_plain_jinja, render_user_template_sync]
HEADERS = {"content-type": "application/json"}


def _render(renderer: Callable[[str, dict[str, Any]], str], body: Any) -> str:
    return renderer(render_template("alpha"), {"body": body, "headers": HEADERS, "method": "POST"})


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize(
    "body",
    [
        {"triggerId": "trig-1", "roundNumber": 901, "dataVersion": "v5.2", "isTest": False},
        {"triggerId": 'q"uo\\te </script> & ünï', "modelId": "m", "extra": {"a": [1, None]}},
        {"triggerId": "t" * 128},
    ],
)
def test_template_renders_the_gateway_event(renderer: Callable, body: dict[str, Any]) -> None:
    rendered = json.loads(_render(renderer, body))
    expected = build_event("alpha", body, datetime.now(UTC))
    assert rendered == {key: expected[key] for key in ("event", "resource", "payload")}


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize(
    "body",
    [{}, {"triggerId": 5}, {"triggerId": ""}, {"triggerId": "t" * 129}, "text", ["triggerId"]],
)
def test_template_rejects_bodies_without_a_valid_trigger_id(renderer: Callable, body: Any) -> None:
    rendered = _render(renderer, body)
    assert rendered.startswith("Rejected:")
    with pytest.raises(json.JSONDecodeError):
        json.loads(rendered)  # so Prefect Cloud answers 400 and records webhook.failed


def test_template_refuses_unsafe_node_names() -> None:
    with pytest.raises(ValueError, match="Invalid node name"):
        render_template('a"}{{ body }}')


class _FakeCloud:
    """A working in-memory stand-in for the workspace's /webhooks endpoints."""

    def __init__(self) -> None:
        self.webhooks: dict[str, dict[str, Any]] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer key"
        path = request.url.path.split("/workspaces/", 1)[1].split("/", 1)[1]
        if (request.method, path) == ("POST", "webhooks/filter"):
            return httpx.Response(200, json=list(self.webhooks.values()))
        if (request.method, path) == ("POST", "webhooks/"):
            webhook_id = str(uuid.uuid4())
            self.webhooks[webhook_id] = {
                **json.loads(request.content),
                "id": webhook_id,
                "slug": f"slug-{len(self.webhooks)}",
                "enabled": True,
            }
            return httpx.Response(201, json=self.webhooks[webhook_id])
        webhook_id = path.removeprefix("webhooks/")
        if webhook_id not in self.webhooks:
            return httpx.Response(404)
        if request.method == "PUT":
            self.webhooks[webhook_id].update(json.loads(request.content))
            return httpx.Response(204)
        return httpx.Response(200, json=self.webhooks[webhook_id])


def test_upsert_creates_then_updates_in_place() -> None:
    cloud = _FakeCloud()
    transport = httpx.MockTransport(cloud.handle)
    first = upsert_cloud_webhook("alpha", api_url=WORKSPACE, api_key="key", transport=transport)
    cloud.webhooks[first.id]["template"] = "stale"
    second = upsert_cloud_webhook("alpha", api_url=WORKSPACE, api_key="key", transport=transport)
    assert first.url == second.url == "https://api.prefect.cloud/hooks/slug-0"
    assert len(cloud.webhooks) == 1
    assert cloud.webhooks[first.id]["name"] == webhook_name("alpha") == "numerai-nodes-alpha"
    assert cloud.webhooks[first.id]["template"] == render_template("alpha")


def test_upsert_needs_a_cloud_workspace() -> None:
    with pytest.raises(ConfigurationError, match="Prefect Cloud workspace"):
        upsert_cloud_webhook("alpha", api_url="http://127.0.0.1:4200/api", api_key="key")
