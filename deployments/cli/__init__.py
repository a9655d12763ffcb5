"""The `numerai-nodes` command line: one typer app, one module per command group.

The CLI modules only parse arguments and print; the work happens in deployments/ and infra/.
`--help` must stay fast, so the command modules import the rooms they call inside each command
function (Prefect, LightGBM and the cloud SDKs take seconds to import). That is the one place
in the project where imports are deferred for speed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from deployments.cli import (
    alerts,
    doctor,
    fleet,
    history,
    infra,
    models,
    node,
    recovery,
    round_day,
    run,
    sizes,
    stack,
    webhook,
)
from deployments.cli.output import NodesGroup

app = typer.Typer(
    name="numerai-nodes",
    cls=NodesGroup,
    help="Run Numerai models as Prefect deployments: prediction nodes that submit every round.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"numerai-nodes {version('numerai-nodes')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run Numerai models as Prefect deployments: prediction nodes that submit every round."""
    if ctx.invoked_subcommand == "sandbox":  # reading the stack's settings costs pydantic
        stack.point_sandbox_commands_at_the_stack()


app.add_typer(run.app, name="run")
app.command("up")(stack.up)
app.command("down")(stack.down)
app.command("status")(stack.status)
app.add_typer(webhook.app, name="webhook")
app.add_typer(node.app, name="node")
node.app.command("add")(fleet.add)
node.app.command("list")(fleet.list_nodes)
node.app.command("remove")(fleet.remove)
node.app.command("sync")(fleet.sync_command)
app.command("doctor")(doctor.doctor)
app.command("history")(history.history)
app.command("sizes")(sizes.sizes)
app.command("train")(models.train)
app.command("models")(models.models)
app.command("round")(round_day.round_command)
app.add_typer(infra.app, name="infra")
app.add_typer(recovery.app, name="recovery")
app.add_typer(alerts.app, name="alerts")


def _mount_sandbox() -> None:
    from sandbox.cli import app as sandbox_app

    app.add_typer(sandbox_app, name="sandbox", help="A local Numerai for rehearsals and tests.")


_mount_sandbox()


def main() -> None:
    """Console-script entry point."""
    app()
