"""Prefect Cloud webhooks: the per-node template that renders the event, and its upsert."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

import httpx
from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL
from pydantic import BaseModel

from deployments.events import EVENT_NAME, MAX_TRIGGER_ID_LENGTH, node_resource_id
from flows.errors import ConfigurationError, NodeError

TEMPLATE_FILE = "cloud_webhook_template.json.j2"
WEBHOOK_NAME_PREFIX = "numerai-nodes-"
_WORKSPACE_URL = re.compile(r"/api/accounts/[0-9a-f-]{36}/workspaces/[0-9a-f-]{36}/?$")


class PrefectCloudError(NodeError, ConnectionError):
    """Prefect Cloud's API refused or failed a webhook call."""

    transient = True


class CloudWebhook(BaseModel):
    """A node's Prefect Cloud webhook: give `url` to Numerai as the model's webhook."""

    id: str
    name: str
    url: str
    enabled: bool = True


def webhook_name(node: str) -> str:
    """The name of a node's Prefect Cloud webhook, e.g. `numerai-nodes-tournament-lgbm`."""
    node_resource_id(node)  # validates the name
    return WEBHOOK_NAME_PREFIX + node


def render_template(node: str) -> str:
    """The Jinja template Prefect Cloud renders for each call to `node`'s webhook."""
    text = (files("deployments") / TEMPLATE_FILE).read_text(encoding="utf-8")
    # Plain substitution, not Jinja: the Jinja in the file is for Prefect Cloud to render.
    for placeholder, value in {
        "__NODE_RESOURCE_ID__": node_resource_id(node),
        "__EVENT_NAME__": EVENT_NAME,
        "__MAX_TRIGGER_ID_LENGTH__": str(MAX_TRIGGER_ID_LENGTH),
    }.items():
        text = text.replace(placeholder, value)
    return text


def upsert_cloud_webhook(
    node: str,
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> CloudWebhook:
    """Create `node`'s webhook in the Prefect Cloud workspace, or update its template in place.

    `api_url` is the workspace API URL (Prefect's PREFECT_API_URL when None); updating keeps the
    webhook's URL, so Numerai's registration stays valid.
    """
    api_url, api_key = _cloud_credentials(api_url, api_key)
    spec = {
        "name": webhook_name(node),
        "description": f"Numerai Nodes: runs node {node!r} when Numerai opens a round.",
        "template": render_template(node),
    }
    try:
        with httpx.Client(
            base_url=api_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {api_key}"},
            transport=transport,
            timeout=30,
        ) as client:
            existing = _find_webhook(client, spec["name"])
            if existing is None:
                webhook = _json(client.post("webhooks/", json=spec))
            else:
                client.put(f"webhooks/{existing['id']}", json=spec).raise_for_status()
                webhook = _json(client.get(f"webhooks/{existing['id']}"))
    except httpx.HTTPError as exc:
        raise PrefectCloudError(
            f"Prefect Cloud answered with an error while saving the webhook of node {node!r}: "
            f"{exc}. Check `prefect cloud login` and that your key may edit webhooks."
        ) from None
    return CloudWebhook(
        id=str(webhook["id"]),
        name=webhook["name"],
        url=_hook_url(api_url, webhook["slug"]),
        enabled=webhook.get("enabled", True),
    )


def _cloud_credentials(api_url: str | None, api_key: str | None) -> tuple[str, str]:

    api_url = api_url or PREFECT_API_URL.value()
    api_key = api_key or PREFECT_API_KEY.value()
    if not api_url or not _WORKSPACE_URL.search(api_url) or not api_key:
        raise ConfigurationError(
            "Prefect Cloud webhooks need a Prefect Cloud workspace: run `prefect cloud login`, "
            "or set PREFECT_API_URL (…/api/accounts/<id>/workspaces/<id>) and PREFECT_API_KEY. "
            "On a self-hosted server, run the webhook gateway instead."
        )
    return api_url, api_key


def _find_webhook(client: httpx.Client, name: str) -> dict[str, Any] | None:
    webhooks = _json(client.post("webhooks/filter"))
    return next((webhook for webhook in webhooks if webhook.get("name") == name), None)


def _json(response: httpx.Response) -> Any:
    response.raise_for_status()
    return response.json()


def _hook_url(api_url: str, slug: str) -> str:
    parts = urlsplit(api_url)
    return f"{parts.scheme}://{parts.netloc}/hooks/{slug}"
