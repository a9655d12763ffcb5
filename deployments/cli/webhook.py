"""`numerai-nodes webhook`: register a node's webhook on Numerai; create and rotate its token."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from deployments.cli.output import console, err_console, fail
from deployments.cli.stack import load_stack, prefect_api_url

if TYPE_CHECKING:
    from deployments.catalogue import Node
    from infra.local.stack import LocalStack

app = typer.Typer(
    help="Per-node webhooks: register them on Numerai, create and rotate their tokens.",
    no_args_is_help=True,
)

NodeName = Annotated[str, typer.Argument(help="The node's name in prefect.yaml.")]
Local = Annotated[
    bool,
    typer.Option(
        "--local", help="Use the local stack's Prefect server even if PREFECT_API_URL is set."
    ),
]
PublicUrl = Annotated[
    str | None,
    typer.Option(
        envvar="NUMERAI_NODES_GATEWAY_PUBLIC_URL",
        help="Self-hosted server: the public URL that reaches the gateway (a tunnel or a "
        "reverse proxy). Default: the local stack's gateway, for the sandbox.",
    ),
]


@app.command("register")
def register_command(
    node: NodeName,
    public_url: PublicUrl = None,
    sandbox: Annotated[
        bool,
        typer.Option("--sandbox", help="Register on the local stack's sandbox (implies --local)."),
    ] = False,
    local: Local = False,
) -> None:
    """Point the model's Numerai webhook at this node: a Prefect Cloud webhook, or the gateway.

    On Prefect Cloud this creates or updates the node's Prefect Cloud webhook. On a self-hosted
    server the URL is the gateway's, with the node's token (created when missing).
    """
    from deployments.catalogue import find_node
    from deployments.webhooks import (
        ensure_token,
        is_prefect_cloud,
        mask_url,
        prefect_api,
        register,
    )

    found = find_node(node)
    stack = load_stack()
    api_url = prefect_api_url(stack, local or sandbox)
    cloud = is_prefect_cloud(api_url)
    with prefect_api(api_url):
        numerai = numerai_client(stack, found, sandbox)
        token = None
        if not cloud:
            token, created = ensure_token(found.name)
            if created:
                err_console.print(
                    f"Created the webhook token of node {found.name!r} (Prefect Secret block). "
                    "Restart the gateway so it accepts it.",
                    highlight=False,
                )
        base = None if cloud else _public_base(stack, public_url, sandbox)
        url = register(
            found, numerai=numerai, prefect_api_url=api_url, public_base=base, token=token
        )
    console.print(
        f"Numerai now calls {mask_url(url)} for model {found.numerai_model!r} (node {found.name}).",
        highlight=False,
    )


@app.command("token")
def token_command(
    node: NodeName,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace the token (the old URL stops working).")
    ] = False,
    local: Local = False,
) -> None:
    """Create a node's webhook token, or rotate it. A new token is shown once, on stdout."""
    from deployments.catalogue import find_node
    from deployments.tokens import create_or_rotate, load_token, token_block_name, token_env_var
    from deployments.webhooks import prefect_api

    found = find_node(node)
    variable = token_env_var(found.name)
    if os.environ.get(variable):
        raise fail(
            f"{variable} is set and overrides the Secret block; "
            + ("change it there to rotate." if rotate else "the token is that value.")
        )
    api_url = prefect_api_url(load_stack(), local)
    block = token_block_name(found.name)
    with prefect_api(api_url):
        if load_token(found.name) is not None and not rotate:
            err_console.print(
                f"Node {found.name!r} has a webhook token (Prefect Secret block {block!r}). "
                "--rotate replaces it.",
                highlight=False,
            )
            return
        token = create_or_rotate(found.name)
    err_console.print(
        f"New webhook token of node {found.name!r}, saved in the Prefect Secret block {block!r} "
        "(shown only this once):",
        highlight=False,
    )
    console.print(token, markup=False, highlight=False)
    if rotate:
        err_console.print(
            "Restart the gateway (numerai-nodes down; numerai-nodes up), then run "
            f"`numerai-nodes webhook register {found.name}` so Numerai uses the new URL.",
            highlight=False,
        )


def numerai_client(stack: LocalStack | None, node: Node, sandbox: bool):
    """A Numerai client for the node's tournament: the local sandbox's, or Numerai's."""
    from flows.keys import connect
    from flows.numerai import NumeraiClient

    if not sandbox:
        return connect(node.tournament)
    running = stack.sandbox() if stack is not None else None
    if running is None:
        raise fail("The local stack has no sandbox running. Start it: numerai-nodes up --sandbox")
    return NumeraiClient(
        running.url, running.public_id, running.secret_key, tournament=node.tournament
    )


def _public_base(stack: LocalStack, public_url: str | None, sandbox: bool) -> str | None:
    """Where Numerai reaches the gateway: --public-url, else the local gateway (if it runs)."""
    if public_url or stack.settings.gateway_public_url:
        return public_url or stack.settings.gateway_public_url
    info = stack.info()
    if info is not None and any(p.alive and p.name == "gateway" for p in info.processes):
        return info.gateway_url
    if sandbox:
        raise fail(
            "The local stack's gateway is not running. Restart it: numerai-nodes up --sandbox"
        )
    return None
