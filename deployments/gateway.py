"""The self-hosted webhook gateway: turns Numerai's webhook POST into one Prefect server event."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import prefect.settings
import uvicorn
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from deployments.events import (
    TRIGGER_ID_LABEL,
    build_event,
    check_node_name,
    describe_validation_error,
)
from deployments.tokens import require_token

MAX_BODY_BYTES = 64 * 1024
MIN_TOKEN_LENGTH = 16
FALLBACK_PREFECT_API_URL = "http://127.0.0.1:4200/api"

logger = logging.getLogger("numerai_nodes.gateway")


def _prefect_setting(name: str) -> Any:
    return getattr(prefect.settings, name).value()


def _default_prefect_api_url() -> str:
    return _prefect_setting("PREFECT_API_URL") or FALLBACK_PREFECT_API_URL


def _default_secret(name: str) -> SecretStr | None:
    value = _prefect_setting(name)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return SecretStr(value) if value else None


class GatewaySettings(BaseSettings):
    """The gateway's settings, read from `NUMERAI_NODES_GATEWAY_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="NUMERAI_NODES_GATEWAY_", extra="ignore")

    prefect_api_url: str = Field(
        default_factory=_default_prefect_api_url,
        description="Prefect API the events go to, e.g. `http://127.0.0.1:4200/api`. "
        "Defaults to Prefect's PREFECT_API_URL setting.",
    )
    prefect_api_key: SecretStr | None = Field(
        default_factory=lambda: _default_secret("PREFECT_API_KEY"),
        description="Bearer key for the Prefect API. Defaults to Prefect's PREFECT_API_KEY.",
    )
    prefect_api_auth_string: SecretStr | None = Field(
        default_factory=lambda: _default_secret("PREFECT_API_AUTH_STRING"),
        description="`user:password` for a server with basic auth. Defaults to "
        "Prefect's PREFECT_API_AUTH_STRING.",
    )
    host: str = Field("127.0.0.1", description="Interface uvicorn binds to.")
    port: int = Field(8080, ge=0, le=65535, description="Port uvicorn binds to.")
    nodes: list[str] = Field(
        default_factory=list,
        description="Nodes whose tokens `load_gateway_settings` reads from the environment "
        "or their Prefect Secret blocks.",
    )
    tokens: dict[str, SecretStr] = Field(
        default_factory=dict, description="Node name to webhook token. Only these nodes answer."
    )
    prefect_timeout_seconds: float = Field(
        10.0, gt=0, description="Timeout of one request to the Prefect API."
    )
    retry_after_seconds: int = Field(
        30, ge=1, description="Retry-After sent with a 503 when Prefect is unavailable."
    )

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return _check_tokens(tokens)

    @property
    def events_url(self) -> str:
        """Where events are POSTed."""
        return self.prefect_api_url.rstrip("/") + "/events"

    @property
    def health_url(self) -> str:
        """Prefect's health endpoint."""
        return self.prefect_api_url.rstrip("/") + "/health"


def _check_tokens(tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
    for node, token in tokens.items():
        check_node_name(node)
        if len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"The token of node {node!r} is shorter than {MIN_TOKEN_LENGTH} characters; "
                "generate one with deployments.tokens.create_or_rotate."
            )
    return tokens


def load_gateway_settings(nodes: Iterable[str] = ()) -> GatewaySettings:
    """Settings from the environment, with the token of every node in `nodes` and settings.nodes.

    Explicit `tokens` win; otherwise each token comes from `NUMERAI_NODES_TOKEN_<NODE>` or the
    node's Prefect Secret block (raises MissingToken when neither has it).
    """
    settings = GatewaySettings()
    tokens = dict(settings.tokens)
    for node in [*settings.nodes, *nodes]:
        if node not in tokens:
            tokens[node] = require_token(node)
    return settings.model_copy(update={"tokens": _check_tokens(tokens)})


class _BodyTooLarge(Exception):
    pass


class _InvalidBody(ValueError):
    pass


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


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise _InvalidBody(f"{name} is not valid JSON")


def _parse_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise _InvalidBody("The body is empty; expected a JSON object with a triggerId.")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise _InvalidBody("The body is not UTF-8 text.") from exc
    except json.JSONDecodeError as exc:
        raise _InvalidBody(f"The body is not valid JSON: {exc}.") from exc
    except RecursionError as exc:
        raise _InvalidBody("The body's JSON is nested too deeply.") from exc
    if not isinstance(body, dict):
        raise _InvalidBody(f"The body is a JSON {type(body).__name__}; expected a JSON object.")
    return body


def _prefect_headers(settings: GatewaySettings) -> dict[str, str]:
    if settings.prefect_api_auth_string:
        raw = settings.prefect_api_auth_string.get_secret_value().encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    if settings.prefect_api_key:
        return {"Authorization": "Bearer " + settings.prefect_api_key.get_secret_value()}
    return {}


def _unavailable(settings: GatewaySettings, reason: str, retry_after: str | None) -> JSONResponse:
    return _error(
        503,
        "prefect_unavailable",
        f"The Prefect API could not take the event ({reason}); retry later.",
        **{"Retry-After": retry_after or str(settings.retry_after_seconds)},
    )


async def _forward(
    client: httpx.AsyncClient, settings: GatewaySettings, event: dict[str, Any]
) -> JSONResponse | None:
    """POST the event; None when Prefect accepted it, else the answer for the caller."""
    try:
        response = await client.post(settings.events_url, json=[event])
    except httpx.HTTPError as exc:
        logger.warning("Prefect API unreachable at %s: %s", settings.events_url, type(exc).__name__)
        return _unavailable(settings, "unreachable", None)
    if response.is_success:
        return None
    logger.warning("Prefect API answered %s to event %s", response.status_code, event["id"])
    if response.status_code >= 500 or response.status_code == 429:
        reason = f"HTTP {response.status_code}"
        return _unavailable(settings, reason, response.headers.get("retry-after"))
    return _error(
        502,
        "prefect_rejected",
        f"The Prefect API refused the event with HTTP {response.status_code}; "
        "check the gateway's Prefect API URL and credentials.",
    )


def create_app(
    settings: GatewaySettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Starlette:
    """The gateway ASGI app; `transport` replaces the network between it and Prefect."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            headers=_prefect_headers(settings),
            timeout=settings.prefect_timeout_seconds,
            transport=transport,
        ) as client:
            app.state.client = client
            yield

    app = Starlette(
        routes=[
            Route("/hooks/{node}/{token}", _receive_webhook, methods=["POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = {
        node: token.get_secret_value().encode() for node, token in settings.tokens.items()
    }
    app.state.decoy = secrets.token_urlsafe(32).encode()
    return app


async def _receive_webhook(request: Request) -> JSONResponse:
    """Authenticate, validate, forward: 202 only once Prefect has accepted the event."""
    state = request.app.state
    node = request.path_params["node"]
    if not _authenticate(state.tokens, state.decoy, node, request.path_params["token"]):
        return _not_found()
    try:
        body = _parse_object(await _read_body(request, MAX_BODY_BYTES))
        event = build_event(node, body, datetime.now(UTC))
    except _BodyTooLarge:
        return _error(413, "body_too_large", f"The body exceeds {MAX_BODY_BYTES} bytes.")
    except _InvalidBody as exc:
        return _error(422, "invalid_body", str(exc))
    except ValidationError as exc:
        return _error(422, "invalid_body", describe_validation_error(exc))
    failure = await _forward(state.client, state.settings, event)
    if failure is not None:
        return failure
    trigger_id = event["resource"][TRIGGER_ID_LABEL]
    logger.info("Node %s: trigger %s became event %s", node, trigger_id, event["id"])
    return JSONResponse(
        {"event_id": event["id"], "node": node, "trigger_id": trigger_id}, status_code=202
    )


async def _healthz(request: Request) -> JSONResponse:
    """200 when Prefect answers, else 503: without Prefect the gateway cannot take a webhook.

    Use it as a readiness or alerting check; a liveness probe on it would restart the gateway
    for an outage of Prefect, which a restart does not fix.
    """
    state = request.app.state
    reachable = await _prefect_reachable(state.client, state.settings)
    return JSONResponse(
        {
            "status": "ok" if reachable else "degraded",
            "prefect_api": "reachable" if reachable else "unreachable",
            "nodes": sorted(state.tokens),
        },
        status_code=200 if reachable else 503,
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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False)


if __name__ == "__main__":
    serve(load_gateway_settings())
