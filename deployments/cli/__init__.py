"""The `numerai-nodes` command line: one typer app, one module per command group."""

from __future__ import annotations

import typer

from deployments.cli import run

app = typer.Typer(
    name="numerai-nodes",
    help="Run Numerai models as Prefect deployments: prediction nodes that submit every round.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(run.app, name="run")


def _mount_sandbox() -> None:
    from sandbox.cli import app as sandbox_app

    app.add_typer(sandbox_app, name="sandbox", help="A local Numerai for rehearsals and tests.")


_mount_sandbox()


def main() -> None:
    """Console-script entry point."""
    app()
