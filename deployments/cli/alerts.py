"""`numerai-nodes alerts`: hear of a failed, crashed or late round (Slack, Discord, Teams, email
or any webhook), through Prefect's notification blocks and automations."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from deployments.cli.output import console, err_console, settings_or_fail
from deployments.cli.stack import load_stack, prefect_api_url

app = typer.Typer(
    help="Alerts: a message (Slack, Discord, Teams, email or any webhook) when a node run fails "
    "or crashes, when a round is at risk (a webhook but no submission), when a round closed "
    "before a node submitted, or when a node submitted with a stale model.",
    no_args_is_help=True,
)


class Kind(StrEnum):
    """The channels Prefect's notification blocks reach."""

    slack = "slack"
    discord = "discord"
    teams = "teams"
    email = "email"
    webhook = "webhook"


Local = Annotated[
    bool,
    typer.Option(
        "--local", help="Use the local stack's Prefect server even if PREFECT_API_URL is set."
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


@app.command("add")
def add_command(
    kind: Annotated[
        Kind, typer.Argument(metavar="KIND", help="Where alerts go.", show_default=False)
    ],
    target: Annotated[
        str,
        typer.Argument(
            metavar="URL_OR_ADDRESS",
            help="The incoming-webhook URL (slack, discord, teams, webhook) or the email "
            "address; `-` reads it from stdin, out of your shell's history.",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="The channel's name (its Prefect block's); default numerai-nodes-KIND."
        ),
    ] = None,
    sender: Annotated[
        str | None,
        typer.Option("--from", help="email: the sender address; default the recipient."),
    ] = None,
    sendgrid_api_key: Annotated[
        str | None,
        typer.Option(
            "--sendgrid-api-key",
            envvar="SENDGRID_API_KEY",
            help="email: the SendGrid API key Prefect's email block sends with.",
            show_default=False,
        ),
    ] = None,
    local: Local = False,
    json_output: Json = False,
) -> None:
    """Add an alert channel: a Prefect notification block and the automations that use it.

    Adding a channel of the same name again replaces it (and applies the current settings,
    e.g. NUMERAI_NODES_AT_RISK_MINUTES).
    """
    from deployments import alerts
    from deployments.webhooks import prefect_api

    if target == "-":
        target = sys.stdin.readline().strip()
    settings = settings_or_fail(alerts.AlertSettings, "NUMERAI_NODES_", "alert")
    name = alerts.check_channel_name(name or f"numerai-nodes-{kind.value}")
    block = alerts.build_block(
        kind.value, target, name=name, sender=sender, sendgrid_api_key=sendgrid_api_key
    )
    api_url = prefect_api_url(load_stack(), local)
    with prefect_api(api_url):
        channel = alerts.add(name, block, settings)
    if json_output:
        typer.echo(json.dumps(channel.model_dump()))
        return
    console.print(
        f"[green]✓[/] Alert channel {escape(channel.name)}: {channel.kind} → "
        f"{escape(channel.target)}",
        highlight=False,
    )
    for automation in channel.automations:
        console.print(f"  [green]✓[/] {escape(automation)}", highlight=False)
    err_console.print(
        f"A round is at risk after {settings.at_risk_minutes:g} minutes without a submission "
        "(NUMERAI_NODES_AT_RISK_MINUTES). Try it: `numerai-nodes alerts test "
        f"{escape(channel.name)}`.",
        highlight=False,
    )


@app.command("list")
def list_command(local: Local = False, json_output: Json = False) -> None:
    """List the alert channels (URLs masked) and their automations."""
    from deployments import alerts
    from deployments.webhooks import prefect_api

    api_url = prefect_api_url(load_stack(), local)
    with prefect_api(api_url):
        found = alerts.channels()
    if json_output:
        typer.echo(json.dumps([channel.model_dump() for channel in found]))
        return
    if not found:
        err_console.print("No alert channels: add one with `numerai-nodes alerts add slack URL`.")
        return
    for channel in found:
        console.print(
            f"[bold]{escape(channel.name)}[/] {channel.kind} → {escape(channel.target)}",
            highlight=False,
        )
        for automation in channel.automations:
            console.print(f"  {escape(automation)}", highlight=False)


@app.command("test")
def test_command(
    name: Annotated[
        str | None, typer.Argument(help="The channel to test; default every channel.")
    ] = None,
    local: Local = False,
) -> None:
    """Send a test alert through a channel (or every channel); exit 1 if one fails."""
    from deployments import alerts
    from deployments.webhooks import prefect_api

    api_url = prefect_api_url(load_stack(), local)
    with prefect_api(api_url):
        sent = alerts.send_test(name)
    for channel in sent:
        console.print(
            f"[green]✓[/] Sent a test alert through {escape(channel.name)} "
            f"({escape(channel.target)})",
            highlight=False,
        )


@app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(help="The channel to remove.", show_default=False)],
    local: Local = False,
) -> None:
    """Remove an alert channel: its automations and its block."""
    from deployments import alerts
    from deployments.webhooks import prefect_api

    api_url = prefect_api_url(load_stack(), local)
    with prefect_api(api_url):
        removed = alerts.remove(name)
    console.print(
        f"[green]✓[/] Removed alert channel {escape(removed.name)} and its "
        f"{len(removed.automations)} automations",
        highlight=False,
    )
