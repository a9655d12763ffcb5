"""Webhook tokens and registrations of the local stack's nodes, on its own Prefect server."""

from __future__ import annotations

from deployments.catalogue import Node
from deployments.webhooks import ensure_token, mask_url, prefect_api, register
from flows.errors import NodeError
from flows.keys import load_keys
from flows.numerai import NumeraiClient
from flows.settings import load_settings
from infra.local.reporter import Reporter
from sandbox.ready import SandboxReady


def tokens(api_url: str, nodes: list[Node], reporter: Reporter) -> dict[str, str]:
    """Each node's webhook token, created (in its Secret block on this server) when missing."""
    found = {}
    with prefect_api(api_url):
        for node in nodes:
            found[node.name], created = ensure_token(node.name)
            if created:
                reporter.note(
                    f"Created the webhook token of node {node.name!r} (Prefect Secret block "
                    "on this server)."
                )
    return found


def register_all(
    api_url: str,
    nodes: list[Node],
    tokens: dict[str, str],
    public_base: str | None,
    sandbox: SandboxReady | None,
    reporter: Reporter,
) -> dict[str, str]:
    """Point each triggered node's Numerai model at its gateway URL; returns node -> masked URL.

    On the sandbox a failure stops the stack; on the real Numerai it is a note, and the user
    registers by hand later (`numerai-nodes webhook register NODE`).
    """
    registered: dict[str, str] = {}
    for node in nodes:
        if not node.has_trigger:
            reporter.note(
                f"Node {node.name!r} has no webhook trigger in prefect.yaml; "
                "its webhook is not registered."
            )
    triggered = [node for node in nodes if node.has_trigger]
    if not public_base:
        if triggered:
            reporter.note(
                "Webhooks are not registered on Numerai: it cannot reach the local gateway. "
                "Expose the gateway (e.g. a tunnel), set NUMERAI_NODES_GATEWAY_PUBLIC_URL, and "
                "run: numerai-nodes webhook register NODE"
            )
        return registered
    for node in triggered:
        try:
            url = register(
                node,
                numerai=_numerai(api_url, node, sandbox),
                prefect_api_url=api_url,
                public_base=public_base,
                token=tokens[node.name],
            )
        except NodeError as exc:
            if sandbox:
                raise
            reporter.note(f"The webhook of node {node.name!r} was not registered: {exc}")
            continue
        registered[node.name] = mask_url(url)
    return registered


def _numerai(api_url: str, node: Node, sandbox: SandboxReady | None) -> NumeraiClient:
    if sandbox:
        return NumeraiClient(
            sandbox.url, sandbox.public_id, sandbox.secret_key, tournament=node.tournament
        )
    settings = load_settings()
    with prefect_api(api_url):
        public_id, secret_key = load_keys(settings)
    return NumeraiClient(settings.api_url, public_id, secret_key, tournament=node.tournament)
