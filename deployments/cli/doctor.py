"""`numerai-nodes doctor`: diagnose a setup, one ✓ or ✗ per link, with a fix for each ✗."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from deployments.cli.output import console


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--node", help="Check only this node (repeatable), set up or not."),
    ] = None,
) -> None:
    """Check versions, the Prefect API, pools and workers, deployments and their triggers,
    Numerai keys and models, the registered webhooks, the gateway, and for cloud pools the
    credentials, the stack, the pool's template, the image and the secrets.

    Uses PREFECT_API_URL and the Numerai settings of the environment, or the running local
    stack (`numerai-nodes up`) when they are not set. Without --node it checks the nodes set up
    on that server. Exits 1 when any check fails.
    """
    from deployments.catalogue import find_node, load_nodes
    from deployments.doctor import diagnose
    from infra.local.environment import local_stack_defaults
    from infra.local.settings import StackSettings
    from infra.places import place_checks

    nodes = load_nodes()
    if only:
        nodes = [find_node(name) for name in only]
    with local_stack_defaults() as stack:
        gateway = StackSettings().gateway_public_url or (
            stack.gateway_url if stack is not None else None
        )
        checks = diagnose(nodes, gateway, explicit=bool(only), places=place_checks)
    failed = [check for check in checks if check.status == "fail"]
    if as_json:
        console.print_json(
            json.dumps({"ok": not failed, "checks": [check.to_json() for check in checks]})
        )
    else:
        marks = {"ok": "[green]✓[/]", "fail": "[red]✗[/]", "warn": "[yellow]![/]"}
        for check in checks:
            console.print(f"{marks[check.status]} {check.name}: {check.detail}", highlight=False)
            if check.fix and check.status != "ok":
                console.print(f"    [dim]fix:[/] {check.fix}", highlight=False)
        summary = f"{len(failed)} problem(s) found." if failed else "All checks passed."
        console.print(f"\n[bold]{summary}[/]")
    if failed:
        raise typer.Exit(1)
