"""The webhook gateway's settings: where Prefect is, the nodes' tokens, the outbox, the timeouts."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import prefect.settings
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.catalogue import CATALOGUE, load_nodes
from deployments.events import check_node_name
from deployments.tokens import load_token, require_token
from flows.errors import ConfigurationError
from flows.settings import HomeSettings

MIN_TOKEN_LENGTH = 16
FALLBACK_PREFECT_API_URL = "http://127.0.0.1:4200/api"


class GatewayNotConfigured(ConfigurationError):
    """The gateway was started with no node to serve."""


def _prefect_setting(name: str) -> Any:
    return getattr(prefect.settings, name).value()


def _default_prefect_api_url() -> str:
    return _prefect_setting("PREFECT_API_URL") or FALLBACK_PREFECT_API_URL


def _default_secret(name: str) -> SecretStr | None:
    value = _prefect_setting(name)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return SecretStr(value) if value else None


def default_outbox_path() -> Path:
    """`<home>/gateway/outbox.sqlite`, home being the project's (NUMERAI_NODES_HOME)."""
    return HomeSettings().home / "gateway" / "outbox.sqlite"


class GatewaySettings(BaseSettings):
    """The gateway's settings, read from `NUMERAI_NODES_GATEWAY_*` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="NUMERAI_NODES_GATEWAY_", env_file=".env", extra="ignore"
    )

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
    port: int = Field(
        8787, ge=0, le=65535, description="Port uvicorn binds to (the local stack's default)."
    )
    nodes: list[str] = Field(
        default_factory=list,
        description="Nodes whose tokens `load_gateway_settings` reads from the environment "
        "or their Prefect Secret blocks (each must have one). Unset: every node of the "
        "catalogue (prefect*.yaml in the working directory) that has a token.",
    )
    tokens: dict[str, SecretStr] = Field(
        default_factory=dict, description="Node name to webhook token. Only these nodes answer."
    )
    prefect_timeout_seconds: float = Field(
        10.0, gt=0, description="Timeout of one request to the Prefect API."
    )
    retry_after_seconds: int = Field(
        30, ge=1, description="Retry-After sent with a 503 when the outbox cannot record a webhook."
    )
    outbox_path: Path = Field(
        default_factory=default_outbox_path,
        description="SQLite file that keeps each accepted webhook's event until Prefect has it. "
        "Defaults to `<home>/gateway/outbox.sqlite` (home: NUMERAI_NODES_HOME).",
    )
    outbox_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="How long a write waits for the outbox's lock before the webhook gets a 503.",
    )
    outbox_retention_days: float = Field(
        7.0, gt=0, description="Delivered events stay in the outbox this long, then are pruned."
    )
    redeliver_after_seconds: float = Field(
        30.0,
        gt=0,
        description="Post an event again when Prefect accepted it but its events API does not "
        "show it after this long (Prefect stores events in batches, every 5 s by default, and "
        "loses the batch when it stops).",
    )
    delivery_backoff_max_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest wait between delivery attempts while Prefect is unreachable.",
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0, description="A webhook whose body takes longer than this to arrive gets a 408."
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
    def events_filter_url(self) -> str:
        """Where the gateway reads events back, to know Prefect stored them."""
        return self.prefect_api_url.rstrip("/") + "/events/filter"

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
    if not tokens:
        tokens = _catalogue_tokens()
    return settings.model_copy(update={"tokens": _check_tokens(tokens)})


def _catalogue_tokens() -> dict[str, SecretStr]:
    """The tokens of the catalogue's webhook-triggered nodes that have one."""
    if not CATALOGUE.exists():
        raise GatewayNotConfigured(
            f"The gateway has no node to serve: no {CATALOGUE} in this directory and "
            "NUMERAI_NODES_GATEWAY_NODES is not set. Start it from the project directory, or name "
            "the nodes (NUMERAI_NODES_GATEWAY_NODES='[\"tournament\"]')."
        )
    found = {}
    for node in load_nodes():
        token = load_token(node.name) if node.has_trigger else None
        if token is not None:
            found[node.name] = token
    if not found:
        raise GatewayNotConfigured(
            "The gateway has no node to serve: no node of the catalogue has a webhook token. "
            "Create one with `numerai-nodes webhook token NODE` (or set "
            "NUMERAI_NODES_TOKEN_<NODE>)."
        )
    return found


def prefect_headers(settings: GatewaySettings) -> dict[str, str]:
    """The Authorization header for the Prefect API, if the settings hold credentials."""
    if settings.prefect_api_auth_string:
        raw = settings.prefect_api_auth_string.get_secret_value().encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    if settings.prefect_api_key:
        return {"Authorization": "Bearer " + settings.prefect_api_key.get_secret_value()}
    return {}
