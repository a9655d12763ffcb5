"""`numerai-nodes infra gcp up`, `down` and `status`: the Terraform stack, key secrets and pool."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from deployments.cli.output import console, err_console, settings_or_fail
from deployments.cli.places import (
    AsJson,
    DeleteBucket,
    ImageTag,
    Preset,
    SkipKeys,
    Yes,
    numerai_keys,
    print_status,
)

if TYPE_CHECKING:
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

Push = Annotated[
    bool | None,
    typer.Option(
        "--push/--no-push",
        help="A cloud-run-v2:push pool that Prefect Cloud serves (no worker), or a hybrid "
        "cloud-run-v2 pool. Default: what the stack was applied with (a new stack: hybrid).",
    ),
]
PushKeyFile = Annotated[
    Path | None,
    typer.Option(
        help="With --push: the worker service account's JSON key file (from `gcloud iam "
        "service-accounts keys create`), stored in the pool's GcpCredentials block (env "
        "NUMERAI_NODES_GCP_PUSH_KEY_FILE). Delete the file afterwards.",
    ),
]
WorkerImage = Annotated[
    str | None,
    typer.Option(
        help="Run the Prefect worker as an always-on Cloud Run service from this image (e.g. "
        "the node image <repository_url>/numerai-nodes:<tag>); '' removes the service. "
        "Default: as the stack was applied.",
    ),
]


def _settings(**overrides: object) -> GcpSettings:
    from infra.gcp.settings import GcpSettings

    return settings_or_fail(GcpSettings, "NUMERAI_NODES_GCP_", "GCP", **overrides)


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
    push: Push = None,
    push_key_file: PushKeyFile = None,
    worker_image: WorkerImage = None,
) -> None:
    """Create or update the GCP stack with Terraform, store the keys in Secret Manager, save the
    GcsBucket result block and create or update the Cloud Run v2 work pool.

    Needs Terraform and Google credentials (`gcloud auth application-default login`). Keys come
    from NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY, or hidden prompts; they never reach
    Terraform: they go to Secret Manager through its API. Terraform's state lives under
    NUMERAI_NODES_HOME (.numerai-nodes/infra/gcp). With --worker-image, the worker runs in Cloud
    Run against the current Prefect profile's API; its PREFECT_API_KEY goes to Secret Manager
    the same way.
    """
    from infra.gcp import place

    settings = _settings(
        project=project,
        region=region,
        pool_name=pool,
        image_tag=image_tag,
        preset=preset,
        push_key_file=push_key_file,
    )
    keys = numerai_keys(skip_keys)
    info = place.up(settings, keys, _progress, push=push, worker_image=worker_image)
    verb = "Created" if info.pool_created else "Updated"
    err_console.print(
        f"{verb} work pool [bold]{escape(info.pool_name)}[/] ({escape(info.pool_type)})."
    )
    for output, value in sorted(info.outputs.items()):
        console.print(f"  {output} = {escape(value)}", highlight=False)
    console.print(f"Image: {info.image}", highlight=False)
    if not info.keys_stored:
        err_console.print("[yellow]Keys not stored (--skip-keys): the stored keys stay.[/]")
    if info.push_block:
        next_step = (
            f"Prefect Cloud starts the jobs with block gcp-credentials/{info.push_block}; no "
            "worker to run. Push the image and check with `numerai-nodes doctor`."
        )
    elif info.worker_service:
        next_step = (
            f"The worker runs as Cloud Run service {info.worker_service}. Push the image and "
            "check with `numerai-nodes doctor`."
        )
    else:
        next_step = (
            f"Push the image, then start a worker: prefect worker start --pool {info.pool_name}"
        )
    err_console.print(escape(next_step), highlight=False)
    for note in info.notes:
        err_console.print(f"[yellow]{escape(note)}[/]", highlight=False)


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
    print_status(place.status(settings), as_json)
