"""Per-node webhook tokens: read from the environment or a Prefect Secret block, and rotated."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping

import httpx
from prefect.blocks.system import Secret
from pydantic import SecretStr

from deployments.events import check_node_name
from flows.errors import ConfigurationError, NodeError

ENV_PREFIX = "NUMERAI_NODES_TOKEN_"
BLOCK_PREFIX = "numerai-nodes-token-"
TOKEN_BYTES = 32


class TokenNotSaved(NodeError, ConnectionError):
    """The Prefect API did not save a node's new webhook token."""

    transient = True


class MissingToken(ConfigurationError, LookupError):
    """A node has no webhook token in the environment nor in its Secret block."""

    def __init__(self, node: str):
        super().__init__(
            f"Node {node!r} has no webhook token. Set {token_env_var(node)} or save the "
            f"Prefect Secret block {token_block_name(node)!r} (the numerai-nodes CLI creates "
            "and rotates it)."
        )


def token_env_var(node: str) -> str:
    """The env var holding a node's token: `NUMERAI_NODES_TOKEN_` + upper-cased name, `-` → `_`."""
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", check_node_name(node).upper())


def token_block_name(node: str) -> str:
    """The Secret block holding a node's token; block names allow only `a-z`, `0-9` and `-`."""
    return BLOCK_PREFIX + re.sub(r"[^a-z0-9]", "-", check_node_name(node))


def load_token(node: str, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """A node's token from the environment, else from its Secret block, else None."""
    from_env = (os.environ if environ is None else environ).get(token_env_var(node))
    if from_env:
        return SecretStr(from_env)
    return _load_block_token(node)


def require_token(node: str, environ: Mapping[str, str] | None = None) -> SecretStr:
    """Like `load_token`, but raise MissingToken (naming both places to put it) when absent."""
    token = load_token(node, environ)
    if token is None:
        raise MissingToken(node)
    return token


def create_or_rotate(node: str) -> str:
    """Generate a new token for `node`, save it to its Secret block (overwriting) and return it."""

    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        Secret(value=token).save(token_block_name(node), overwrite=True)
    except httpx.HTTPError as exc:
        raise TokenNotSaved(
            f"Saving the webhook token of node {node!r} in its Prefect Secret block failed "
            f"({type(exc).__name__}). Check that the Prefect API (PREFECT_API_URL) is up."
        ) from None
    return token


def _load_block_token(node: str) -> SecretStr | None:

    try:
        block = Secret.load(token_block_name(node))
    except ValueError:  # Prefect's "block document not found"
        return None
    assert isinstance(block, Secret), "a sync caller gets the block, never a coroutine"
    value = block.get()
    return SecretStr(value) if isinstance(value, str) and value else None
