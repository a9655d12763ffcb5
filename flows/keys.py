"""Numerai API keys: from the environment, then an Azure Key Vault, then Prefect Secret blocks."""

from __future__ import annotations

import httpx
from prefect.blocks.system import Secret

from flows.key_vault import key_vault_keys
from flows.numerai import NumeraiClient
from flows.settings import NodesSettings, load_settings


def load_keys(settings: NodesSettings) -> tuple[str | None, str | None]:
    """Return (public_id, secret_key), or (None, None) when no keys are configured anywhere."""
    if settings.public_id and settings.secret_key:
        return settings.public_id.get_secret_value(), settings.secret_key.get_secret_value()
    if settings.key_vault_url:
        return key_vault_keys(settings.key_vault_url.rstrip("/") + "/")
    public_id = _secret_block(settings.public_id_block)
    secret_key = _secret_block(settings.secret_key_block)
    if public_id and secret_key:
        return public_id, secret_key
    return None, None


def connect(tournament: int, settings: NodesSettings | None = None) -> NumeraiClient:
    """A Numerai client for `tournament`, with keys if any are configured."""
    settings = settings or load_settings()
    public_id, secret_key = load_keys(settings)
    return NumeraiClient(
        settings.api_url,
        public_id,
        secret_key,
        tournament=tournament,
        show_progress=settings.show_progress,
        timeout=httpx.Timeout(
            settings.request_timeout_seconds, connect=settings.connect_timeout_seconds
        ),
    )


def _secret_block(name: str) -> str | None:
    """The value of a Prefect Secret block, or None if it does not exist or Prefect is away."""

    try:
        # `_sync` is Prefect's async_dispatch switch, which Block.load's signature does not declare.
        block = Secret.load(name, _sync=True)  # type: ignore[call-arg]
        assert isinstance(block, Secret), "_sync=True returns the block, never a coroutine"
        return str(block.get())
    except Exception:  # a missing block, or no Prefect API: both mean "no keys here"
        return None
