"""The self-hosted webhook gateway: turns Numerai's webhook POST into one Prefect server event.

A webhook is answered 202 once its event is in the gateway's outbox (SQLite, on disk); the
delivery loop then posts it to Prefect, at once and again until Prefect has stored it. So an
outage of Prefect, or a restart of either side, loses nothing, and Numerai (which does not
redeliver a webhook answered 202) need not retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from deployments.events import TRIGGER_ID_LABEL, build_event, describe_validation_error
from deployments.gateway_body import (
    MAX_BODY_BYTES,
    BodyTooLarge,
    BodyTooSlow,
    InvalidBody,
    parse_object,
    read_body,
)
from deployments.gateway_delivery import Delivery
from deployments.gateway_settings import (
    MIN_TOKEN_LENGTH,
    GatewaySettings,
    load_gateway_settings,
    prefect_headers,
)
from deployments.outbox import Outbox, OutboxUnavailable
from deployments.tokens import load_token
from deployments.webhooks import prefect_api
from flows.errors import NodeError
from flows.events import NODE_NAME_PATTERN

__all__ = [
    "MAX_BODY_BYTES",
    "MIN_TOKEN_LENGTH",
    "GatewaySettings",
    "create_app",
    "load_gateway_settings",
    "serve",
]

logger = logging.getLogger("numerai_nodes.gateway")


def _error(status_code: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code, headers=headers or None)


def _not_found() -> JSONResponse:
    # One answer for an unknown node and a wrong token, so callers cannot probe for nodes.
    return _error(404, "not_found", "No webhook at this URL.")


def _authenticate(tokens: dict[str, bytes], decoy: bytes, node: str, token: str) -> bool:
    expected = tokens.get(node)
    # Compare even for unknown nodes, so the answer takes as long as for a wrong token.
    matches = hmac.compare_digest(token.encode(), decoy if expected is None else expected)
    return expected is not None and matches


def create_app(
    settings: GatewaySettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Starlette:
    """The gateway ASGI app; `transport` replaces the network between it and Prefect.

    Starting it opens the outbox (raising OutboxUnavailable when it cannot) and starts the
    delivery loop, which first delivers whatever an earlier run left undelivered.
    """
    outbox = Outbox(settings.outbox_path, timeout_seconds=settings.outbox_timeout_seconds)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(outbox.open)
        async with httpx.AsyncClient(
            headers=prefect_headers(settings),
            timeout=settings.prefect_timeout_seconds,
            transport=transport,
        ) as client:
            app.state.client = client
            app.state.delivery = Delivery(outbox, client, settings)
            task = asyncio.create_task(app.state.delivery.run(), name="gateway-delivery")
            task.add_done_callback(_report_stopped_delivery)
            app.state.delivery_task = task
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(
        routes=[
            Route("/hooks/{node}/{token}", _receive_webhook, methods=["POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.outbox = outbox
    app.state.tokens = {
        node: token.get_secret_value().encode() for node, token in settings.tokens.items()
    }
    app.state.misses = {}
    app.state.decoy = secrets.token_urlsafe(32).encode()
    return app


def _report_stopped_delivery(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        # A bug, not an outage: keep the traceback. /healthz now answers 503.
        logger.error("The delivery loop stopped; events stay in the outbox", exc_info=exc)


# A node added while the gateway runs (`numerai-nodes node add --deploy`) has its token in a
# Prefect Secret block the gateway has not read: it is read on the node's first call. A miss is
# remembered for a minute, so a name that has no token costs one look-up a minute at most.
_MISS_SECONDS = 60.0
_MISSES_KEPT = 10_000


async def _discover_token(state: Any, settings: GatewaySettings, node: str) -> None:
    """Read the token of a node the gateway did not know when it started, if it has one."""
    if node in state.tokens or not NODE_NAME_PATTERN.fullmatch(node):
        return
    missed = state.misses.get(node)
    if missed is not None and time.monotonic() - missed < _MISS_SECONDS:
        return

    def look_up() -> SecretStr | None:
        with prefect_api(settings.prefect_api_url):
            return load_token(node)

    try:
        token = await asyncio.to_thread(look_up)
    except Exception as exc:  # Prefect unreachable: the call is answered as for an unknown node
        logger.warning("Node %s: could not look up its token (%s)", node, type(exc).__name__)
        token = None
    if token is None:
        if len(state.misses) >= _MISSES_KEPT:
            state.misses.clear()
        state.misses[node] = time.monotonic()
        return
    state.tokens[node] = token.get_secret_value().encode()
    logger.info("Node %s: its webhook token was created after the gateway started; read it", node)


async def _receive_webhook(request: Request) -> JSONResponse:
    """Authenticate, validate, record: 202 only once the event is on disk in the outbox."""
    state = request.app.state
    settings: GatewaySettings = state.settings
    node = request.path_params["node"]
    await _discover_token(state, settings, node)
    if not _authenticate(state.tokens, state.decoy, node, request.path_params["token"]):
        return _not_found()
    try:
        raw = await read_body(request, MAX_BODY_BYTES, settings.body_timeout_seconds)
    except BodyTooLarge:
        return _error(413, "body_too_large", f"The body exceeds {MAX_BODY_BYTES} bytes.")
    except BodyTooSlow:
        logger.warning("Node %s: the body did not arrive within the body timeout", node)
        message = f"The body did not arrive within {settings.body_timeout_seconds:g} s."
        return _error(408, "body_timeout", message, Connection="close")
    except ClientDisconnect:
        logger.warning("Node %s: the sender hung up before its body was complete", node)
        return _error(400, "client_disconnected", "The body was not complete.")
    try:
        event = build_event(node, parse_object(raw), datetime.now(UTC))
    except InvalidBody as exc:
        return _error(422, "invalid_body", str(exc))
    except ValidationError as exc:
        return _error(422, "invalid_body", describe_validation_error(exc))
    except (ValueError, RecursionError) as exc:  # whatever the checks missed is still a 4xx
        return _error(422, "invalid_body", f"The body cannot be read ({type(exc).__name__}).")
    try:
        fresh = await asyncio.to_thread(state.outbox.record, event)
    except OutboxUnavailable as exc:
        logger.error("Node %s: %s", node, exc)
        retry_after = str(settings.retry_after_seconds)
        message = "The gateway cannot record the webhook right now; retry later."
        return _error(503, "outbox_unavailable", message, **{"Retry-After": retry_after})
    state.delivery.wake()
    trigger_id = event["resource"][TRIGGER_ID_LABEL]
    seen = "became" if fresh else "is already"
    logger.info("Node %s: trigger %s %s event %s", node, trigger_id, seen, event["id"])
    return JSONResponse(
        {"event_id": event["id"], "node": node, "trigger_id": trigger_id}, status_code=202
    )


async def _healthz(request: Request) -> JSONResponse:
    """200 when Prefect answers, the outbox reads and the delivery loop runs; else 503.

    Webhooks are still taken while Prefect is down (they wait in the outbox), so use it as a
    readiness or alerting check; a liveness probe on it would restart the gateway for an outage
    of Prefect, which a restart does not fix.
    """
    state = request.app.state
    reachable = await _prefect_reachable(state.client, state.settings)
    try:
        outbox: dict[str, int] | str = await asyncio.to_thread(state.outbox.counts)
    except OutboxUnavailable:
        outbox = "unavailable"
    delivering = not state.delivery_task.done()
    healthy = reachable and isinstance(outbox, dict) and delivering
    return JSONResponse(
        {
            "status": "ok" if healthy else "degraded",
            "prefect_api": "reachable" if reachable else "unreachable",
            "outbox": outbox,
            "delivery": "running" if delivering else "stopped",
            "nodes": sorted(state.tokens),
        },
        status_code=200 if healthy else 503,
    )


async def _prefect_reachable(client: httpx.AsyncClient, settings: GatewaySettings) -> bool:
    try:
        timeout = min(2.0, settings.prefect_timeout_seconds)
        response = await client.get(settings.health_url, timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.is_success


def serve(settings: GatewaySettings) -> None:
    """Run the gateway with uvicorn until interrupted. The access log is off: URLs hold tokens."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per delivery and health check
    logging.getLogger(__name__).info(
        "Serving the webhooks of %s on http://%s:%d/hooks/<node>/<token>, for Prefect at %s",
        ", ".join(sorted(settings.tokens)),
        settings.host,
        settings.port,
        settings.prefect_api_url,
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False)


def main() -> int:
    """`python -m deployments.gateway`: serve, or say in one line why it cannot."""
    try:
        settings = load_gateway_settings()
    except NodeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
