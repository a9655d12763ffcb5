"""`numerai-nodes infra gcp`: create, show and destroy the GCP stack (Terraform, keys, pool)."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deployments.cli.output import console, err_console, fail, settings_or_fail
from flows.errors import NodeError

app = typer.Typer(
    help="The GCP stack: Artifact Registry, a results bucket, key secrets, a Cloud Run v2 pool.",
    no_args_is_help=True,
)

Project = Annotated[
    str | None, typer.Option(help="GCP project ID (env NUMERAI_NODES_GCP_PROJECT).")
]
Region = Annotated[
    str | None,
    typer.Option(help="Region (env NUMERAI_NODES_GCP_REGION; default us-central1)."),
]
Pool = Annotated[
    str | None,
    typer.Option(
        "--pool", help="Work pool name (env NUMERAI_NODES_GCP_POOL_NAME; default cloud-run)."
    ),
]


def _settings(**overrides: object):
    from infra.gcp.place import GcpSettings

    return settings_or_fail(GcpSettings, "NUMERAI_NODES_GCP_", "GCP", **overrides)


def _progress(line: str) -> None:
    err_console.print(f"[dim]{escape(line)}[/]", highlight=False)


def _keys(store: bool) -> tuple[str, str] | None:
    """The Numerai keys from the environment, else hidden prompts (None with --no-keys)."""
    if not store:
        return None
    missing = not (os.environ.get("NUMERAI_PUBLIC_ID") and os.environ.get("NUMERAI_SECRET_KEY"))
    if missing and not sys.stdin.isatty():
        raise fail(
            "Numerai keys are needed: set NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY, run in a "
            "terminal to be prompted, or pass --no-keys to keep the stored secret versions."
        )
    public_id = os.environ.get("NUMERAI_PUBLIC_ID") or typer.prompt(
        "Numerai public id", hide_input=True
    )
    secret_key = os.environ.get("NUMERAI_SECRET_KEY") or typer.prompt(
        "Numerai secret key", hide_input=True
    )
    return public_id, secret_key


def up(
    project: Project = None,
    region: Region = None,
    pool: Pool = None,
    image_tag: Annotated[
        str | None, typer.Option(help="Image tag the pool runs (default latest).")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="Size preset of the pool's defaults (default gen-m).")
    ] = None,
    keys: Annotated[
        bool,
        typer.Option(
            "--keys/--no-keys",
            help="Store the Numerai keys (env NUMERAI_PUBLIC_ID / NUMERAI_SECRET_KEY, else a "
            "hidden prompt) as new secret versions. --no-keys keeps the stored ones.",
        ),
    ] = True,
) -> None:
    """Create or update the GCP stack with Terraform, store the keys in Secret Manager, save the
    GcsBucket result block and create or update the Cloud Run v2 work pool.

    Needs Terraform and Google credentials (`gcloud auth application-default login`). The keys
    never reach Terraform: they go to Secret Manager through its API.
    """
    from infra.gcp.place import GcpStackError
    from infra.gcp.place import up as stack_up

    settings = _settings(
        project=project, region=region, pool_name=pool, image_tag=image_tag, preset=preset
    )
    secret_values = _keys(keys)
    try:
        info = stack_up(settings, keys=secret_values, progress=_progress)
    except (GcpStackError, NodeError, ValueError) as exc:
        raise fail(escape(str(exc))) from None
    verb = "Created" if info.pool_created else "Updated"
    err_console.print(f"{verb} work pool [bold]{escape(info.pool_name)}[/] (cloud-run-v2).")
    _print_outputs(info.outputs)
    console.print(f"Image: {info.image}", highlight=False)
    if not info.keys_stored:
        err_console.print("[yellow]Keys not stored (--no-keys): the stored versions stay.[/]")
    err_console.print(
        f"Push the image, then start a worker: prefect worker start --pool {info.pool_name}",
        highlight=False,
    )


def down(
    pool: Pool = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy the GCP stack (bucket, secrets, registry, service accounts) and delete its pool
    and result block. The bucket must be empty unless Terraform's force_destroy is set."""
    from infra.gcp.place import GcpStackError
    from infra.gcp.place import down as stack_down

    settings = _settings(pool_name=pool)
    if not yes:
        typer.confirm("Destroy the GCP stack, its cached models and the stored keys?", abort=True)
    try:
        destroyed = stack_down(settings, progress=_progress)
    except (GcpStackError, NodeError) as exc:
        raise fail(escape(str(exc))) from None
    if not destroyed:
        err_console.print("No GCP stack is applied here: nothing to destroy.")
        return
    err_console.print(f"Destroyed the GCP stack and deleted work pool {settings.pool_name}.")


def status(
    pool: Pool = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Show the stack's Terraform outputs and check the credentials, the pool, secrets and image.
    Exits 1 when a check fails."""
    from infra.gcp.doctor import doctor_checks
    from infra.gcp.place import GcpStackError, stack_outputs

    settings = _settings(pool_name=pool)
    checks = doctor_checks(settings.pool_name, settings)

    try:
        outputs = stack_outputs(settings)
    except GcpStackError:
        outputs = {}
    failed = [check for check in checks if check.status == "fail"]
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "ok": not failed,
                    "pool": settings.pool_name,
                    "outputs": outputs,
                    "checks": [check.to_json() for check in checks],
                }
            )
        )
    else:
        if outputs:
            _print_outputs(outputs)
        marks = {"ok": "[green]✓[/]", "fail": "[red]✗[/]", "warn": "[yellow]![/]"}
        for check in checks:
            console.print(
                f"{marks[check.status]} {escape(check.name)}: {escape(check.detail)}",
                highlight=False,
            )
            if check.fix and check.status != "ok":
                console.print(f"    [dim]fix:[/] {escape(check.fix)}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _print_outputs(outputs: dict[str, str]) -> None:
    table = Table("output", "value")
    for name, value in sorted(outputs.items()):
        table.add_row(name, escape(value))
    console.print(table)


app.command("up")(up)
app.command("down")(down)
app.command("status")(status)
