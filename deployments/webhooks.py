"""Registering a node's webhook: the URL Numerai calls (a Prefect Cloud webhook or the gateway)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import httpx
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.catalogue import Node
from deployments.cloud_webhook import upsert_cloud_webhook
from deployments.events import check_node_name
from deployments.tokens import create_or_rotate, load_token, require_token
from flows.errors import ConfigurationError, NumeraiApiError

if TYPE_CHECKING:  # numerapi pulls in pandas: keep it out of the CLI's start-up
    from flows.numerai import NumeraiClient

_CLOUD_WORKSPACE_PATH = re.compile(
    r"/api/accounts/[0-9a-f-]{36}/workspaces/[0-9a-f-]{36}/?$", re.IGNORECASE
)
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MASK = "****"


def is_prefect_cloud(api_url: str | None) -> bool:
    """Whether `api_url` is a Prefect Cloud workspace (with webhooks), not a self-hosted server."""
    if not api_url:
        return False
    parts = urlsplit(api_url)
    host = (parts.hostname or "").lower()
    on_cloud_host = host == "prefect.cloud" or host.endswith(".prefect.cloud")
    return on_cloud_host or bool(_CLOUD_WORKSPACE_PATH.search(parts.path))


def is_loopback(url: str) -> bool:
    """Whether `url` points at this machine only (so nothing outside it can call it)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def gateway_url(public_base: str, node: str, token: str) -> str:
    """The URL Numerai calls for `node` on a self-hosted server: `<base>/hooks/<node>/<token>`.

    `public_base` is where the gateway is reachable, e.g. `https://hooks.example.org` or
    `http://127.0.0.1:8787`; it may carry a path prefix (a reverse proxy's).
    """
    parts = urlsplit(public_base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"The gateway's public URL must start with http:// or https://, got {public_base!r}."
        )
    if parts.query or parts.fragment:
        raise ConfigurationError("The gateway's public URL must not have a query or a fragment.")
    if not token:
        raise ConfigurationError(f"Node {node!r} has an empty webhook token.")
    return f"{public_base.rstrip('/')}/hooks/{check_node_name(node)}/{quote(token, safe='')}"


def mask_url(url: str) -> str:
    """`url` with its last path segment (a token, or a Cloud webhook's slug) hidden, for display."""
    head, sep, _ = url.rstrip("/").rpartition("/")
    return f"{head}{sep}{MASK}" if sep else MASK


@contextlib.contextmanager
def prefect_api(api_url: str) -> Iterator[None]:
    """Point this process's Prefect client (Secret blocks) at `api_url` for the block inside."""

    with temporary_settings({PREFECT_API_URL: api_url}):
        try:
            yield
        finally:
            # Loading a block emits an event; send it now, while the API URL still applies.
            EventsWorker.drain_all(timeout=5)


def ensure_token(node: str) -> tuple[str, bool]:
    """`node`'s webhook token, and whether it was just created (in its Prefect Secret block)."""

    existing = load_token(node)
    if existing is not None:
        return existing.get_secret_value(), False
    return create_or_rotate(node), True


def register(
    node: Node,
    *,
    numerai: NumeraiClient,
    prefect_api_url: str,
    public_base: str | None = None,
    token: str | None = None,
    prefect_api_key: str | None = None,
    cloud_transport: httpx.BaseTransport | None = None,
) -> str:
    """Make Numerai call `node`'s webhook when a round opens; returns the URL set on the model.

    On Prefect Cloud the URL is the node's Prefect Cloud webhook (created or updated). On a
    self-hosted server it is the gateway's URL under `public_base`, with the node's `token`.
    `numerai` must be a client with keys for the node's tournament. The URL holds a secret:
    show it with `mask_url`.
    """
    if is_prefect_cloud(prefect_api_url):
        url = upsert_cloud_webhook(
            node.name, api_url=prefect_api_url, api_key=prefect_api_key, transport=cloud_transport
        ).url
    else:
        if not public_base:
            raise ConfigurationError(
                f"A self-hosted Prefect server has no webhooks, so Numerai calls the gateway: pass "
                f"the URL that reaches it (--public-url, or NUMERAI_NODES_GATEWAY_PUBLIC_URL) to "
                f"register node {node.name!r}."
            )
        if token is None:
            token = require_token(node.name).get_secret_value()
        url = gateway_url(public_base, node.name, token)
    if is_loopback(url) and not is_loopback(numerai.url):
        raise ConfigurationError(
            f"Numerai at {numerai.url} cannot call {mask_url(url)}, which only this machine "
            "reaches. Expose the gateway (a tunnel or a reverse proxy) and pass its public URL "
            "with --public-url or NUMERAI_NODES_GATEWAY_PUBLIC_URL."
        )
    model_id = numerai.model_id(node.numerai_model)
    if not numerai.set_webhook(model_id, url):
        raise NumeraiApiError(
            f"Numerai did not accept the webhook of model {node.numerai_model!r} (node "
            f"{node.name!r}); check that your API key has the scope to edit models."
        )
    return url
