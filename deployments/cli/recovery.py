"""`numerai-nodes recovery`: the automations that run crashed and silent node runs again."""

from __future__ import annotations

from typing import Annotated

import typer

from deployments.cli.output import console, err_console, fail
from deployments.cli.stack import load_stack, prefect_api_url

app = typer.Typer(
    help="Crash recovery: Prefect automations that run a crashed node run again, and mark a "
    "run whose process is gone as crashed.",
    no_args_is_help=True,
)

Local = Annotated[
    bool,
    typer.Option(
        "--local", help="Use the local stack's Prefect server even if PREFECT_API_URL is set."
    ),
]


@app.command("apply")
def apply_command(local: Local = False) -> None:
    """Create or update the two recovery automations on the Prefect API (Cloud or a server).

    `numerai-nodes up` and `infra aws|gcp up` apply them already; run this after
    `prefect deploy` on a Prefect API that neither of those set up.
    """
    from deployments import recovery
    from deployments.webhooks import prefect_api

    api_url = prefect_api_url(load_stack(), local)
    settings = recovery.RecoverySettings()
    with prefect_api(api_url):
        names = recovery.apply(settings)
    for name in names:
        console.print(f"[green]✓[/] {name}", highlight=False)
    err_console.print(
        f"Node runs send a heartbeat every {settings.heartbeat_seconds} s; one silent for "
        f"{settings.silence_seconds} s is marked crashed, and a crashed run is scheduled again "
        "(the same run and trigger id) while its round is open. Flow runs send heartbeats when "
        f"their environment sets {recovery.HEARTBEAT_ENV}: the local stack and the ECS and "
        "Cloud Run pools of `infra … up` set it.",
        highlight=False,
    )


@app.command("status")
def status_command(local: Local = False) -> None:
    """Say whether the recovery automations exist and are enabled; exit 1 if one is missing."""
    from deployments import recovery
    from deployments.webhooks import prefect_api

    api_url = prefect_api_url(load_stack(), local)
    with prefect_api(api_url):
        missing = recovery.missing()
    for name in recovery.AUTOMATIONS:
        mark = "[red]✗ missing or disabled[/]" if name in missing else "[green]✓[/]"
        console.print(f"{mark} {name}", highlight=False)
    if missing:
        raise fail("Crash recovery is not set up here: run `numerai-nodes recovery apply`.")
