"""`numerai-nodes infra gcp up`, `down` and `status`: the Terraform stack, key secrets and pool."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from deployments.cli.output import console, err_console, settings_or_fail

if TYPE_CHECKING:
    from infra.cloud import NumeraiKeys, PlaceStatus
    from infra.gcp.settings import GcpSettings

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
# The options both places' commands share, spelled the same in infra_aws.py and infra_gcp.py.
ImageTag = Annotated[
    str | None, typer.Option(help="Tag of the node image the pool runs (default latest).")
]
Preset = Annotated[
    str | None, typer.Option(help="Size preset of the pool's defaults, e.g. gen-m (the default).")
]
SkipKeys = Annotated[
    bool,
    typer.Option("--skip-keys", help="Leave the stored Numerai keys as they are; none are needed."),
]
DeleteBucket = Annotated[
    bool,
    typer.Option(
        "--delete-bucket",
        help="Also delete the results bucket and the trained models in it (kept by default).",
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _settings(**overrides: object) -> GcpSettings:
    from infra.gcp.settings import GcpSettings

    return settings_or_fail(GcpSettings, "NUMERAI_NODES_GCP_", "GCP", **overrides)


def _keys(skip: bool) -> NumeraiKeys | None:
    """The Numerai keys from the settings, else hidden prompts in a terminal (None if `skip`)."""
    from infra.cloud import keys_from_settings

    if skip:
        return None
    return keys_from_settings(_hidden_prompt if sys.stdin.isatty() else None)


def _hidden_prompt(label: str) -> str:
    return str(typer.prompt(label, hide_input=True))


def _print_status(found: PlaceStatus, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(found.to_json()))
    else:
        for line in found.summary():
            console.print(escape(line), highlight=False)


def _progress(line: str) -> None:
    err_console.print(f"[dim]{escape(line)}[/]", highlight=False)


@app.command("up")
def up(
    project: Project = None,
    region: Region = None,
    pool: Pool = None,
    image_tag: ImageTag = None,
    preset: Preset = None,
    skip_keys: SkipKeys = False,
) -> None:
    """Create or update the GCP stack with Terraform, store the keys in Secret Manager, save the
    GcsBucket result block and create or update the Cloud Run v2 work pool.

    Needs Terraform and Google credentials (`gcloud auth application-default login`). Keys come
    from NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY, or hidden prompts; they never reach
    Terraform: they go to Secret Manager through its API. Terraform's state lives under
    NUMERAI_NODES_HOME (.numerai-nodes/infra/gcp).
    """
    from infra.gcp import place

    settings = _settings(
        project=project, region=region, pool_name=pool, image_tag=image_tag, preset=preset
    )
    keys = _keys(skip_keys)
    info = place.up(settings, keys, _progress)
    verb = "Created" if info.pool_created else "Updated"
    err_console.print(f"{verb} work pool [bold]{escape(info.pool_name)}[/] (cloud-run-v2).")
    for output, value in sorted(info.outputs.items()):
        console.print(f"  {output} = {escape(value)}", highlight=False)
    console.print(f"Image: {info.image}", highlight=False)
    if not info.keys_stored:
        err_console.print("[yellow]Keys not stored (--skip-keys): the stored keys stay.[/]")
    err_console.print(
        f"Push the image, then start a worker: prefect worker start --pool {info.pool_name}",
        highlight=False,
    )


@app.command("down")
def down(pool: Pool = None, delete_bucket: DeleteBucket = False, yes: Yes = False) -> None:
    """Destroy the GCP stack (registry, secrets, service accounts) and delete its pool and result
    block. The bucket with the trained models is kept unless --delete-bucket; the next `up`
    adopts a kept bucket."""
    from infra.gcp import place

    settings = _settings(pool_name=pool)
    bucket = ", the bucket with its trained models" if delete_bucket else ""
    if not yes and not typer.confirm(
        f"Destroy the GCP stack{bucket}, the stored keys and work pool {settings.pool_name}?"
    ):
        raise typer.Exit(1)
    for line in place.down(settings, delete_bucket=delete_bucket, progress=_progress):
        err_console.print(f"- {escape(line)}", highlight=False)


@app.command("status")
def status(pool: Pool = None, as_json: AsJson = False) -> None:
    """Show the stack's Terraform outputs, and whether the work pool matches them. `numerai-nodes
    doctor` also checks the credentials, the key secrets and the image."""
    from infra.gcp import place

    settings = _settings(pool_name=pool)
    _print_status(place.status(settings), as_json)
