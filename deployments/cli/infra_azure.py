"""`numerai-nodes infra azure up`, `down` and `status`: the Terraform stack, Key Vault and pool."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from deployments.cli.output import console, err_console, settings_or_fail
from deployments.cli.places import (
    AsJson,
    ImageTag,
    Preset,
    SkipKeys,
    Yes,
    numerai_keys,
    print_status,
)

if TYPE_CHECKING:
    from infra.azure.settings import AzureSettings

app = typer.Typer(
    help="The Azure stack: a container registry, results storage, Key Vault, an ACI pool.",
    no_args_is_help=True,
)

Subscription = Annotated[
    str | None,
    typer.Option(
        "--subscription",
        help="Azure subscription ID (env NUMERAI_NODES_AZURE_SUBSCRIPTION_ID; default the "
        "existing stack's, else ARM_SUBSCRIPTION_ID or the Azure CLI's).",
    ),
]
Location = Annotated[
    str | None,
    typer.Option(help="Azure region (env NUMERAI_NODES_AZURE_LOCATION; default eastus)."),
]
ResourceGroup = Annotated[
    str | None,
    typer.Option(
        help="Resource group the stack creates (env NUMERAI_NODES_AZURE_RESOURCE_GROUP; "
        "default numerai-nodes)."
    ),
]
WorkerIdentity = Annotated[
    bool | None,
    typer.Option(
        "--worker-identity/--no-worker-identity",
        help="Also create a managed identity for a hybrid ACI worker (default yes).",
        show_default=False,
    ),
]
Pool = Annotated[
    str | None,
    typer.Option(
        "--pool", help="Work pool name (env NUMERAI_NODES_AZURE_POOL_NAME; default azure)."
    ),
]
Push = Annotated[
    bool | None,
    typer.Option(
        "--push/--no-push",
        help="An azure-container-instance:push pool that Prefect Cloud serves (no worker), or a "
        "hybrid azure-container-instance pool. Default: what the stack was applied with (a new "
        "stack: hybrid).",
    ),
]
DeleteStorage = Annotated[
    bool,
    typer.Option(
        "--delete-storage",
        help="Also delete the storage account and the trained models in it (kept by default).",
    ),
]


def _settings(**overrides: object) -> AzureSettings:
    from infra.azure.settings import AzureSettings

    return settings_or_fail(AzureSettings, "NUMERAI_NODES_AZURE_", "Azure", **overrides)


def _progress(line: str) -> None:
    err_console.print(f"[dim]{escape(line)}[/]", highlight=False)


@app.command("up")
def up(
    subscription: Subscription = None,
    location: Location = None,
    resource_group: ResourceGroup = None,
    pool: Pool = None,
    image_tag: ImageTag = None,
    preset: Preset = None,
    worker_identity: WorkerIdentity = None,
    skip_keys: SkipKeys = False,
    push: Push = None,
) -> None:
    """Create or update the Azure stack with Terraform, store the keys in Key Vault, save the
    AzureBlobStorageContainer result block and create or update the ACI work pool.

    Needs Terraform and Azure credentials (`az login`). Keys come from NUMERAI_PUBLIC_ID and
    NUMERAI_SECRET_KEY, or hidden prompts; they never reach Terraform: they go to Key Vault
    through its API. Terraform's state lives under NUMERAI_NODES_HOME
    (.numerai-nodes/infra/azure).

    With --push on Prefect Cloud, Prefect Cloud starts the container groups (an
    azure-container-instance:push pool) as a service principal you create with no role (`az ad
    sp create-for-rbac --name numerai-nodes-push`); the stack grants it the worker role. Its
    appId, tenant and password come from NUMERAI_NODES_AZURE_PUSH_CLIENT_ID, _TENANT_ID and
    _CLIENT_SECRET, or hidden prompts, and go into a Prefect block only.
    """
    from infra.azure import place

    settings = _settings(
        subscription_id=subscription,
        location=location,
        resource_group=resource_group,
        pool_name=pool,
        image_tag=image_tag,
        preset=preset,
        create_worker_identity=worker_identity,
    )
    keys = numerai_keys(skip_keys)
    ask = _hidden_prompt if sys.stdin.isatty() else None
    info = place.up(settings, keys, _progress, push=push, ask=ask)
    verb = "Created" if info.pool_created else "Updated"
    err_console.print(
        f"{verb} work pool [bold]{escape(info.pool_name)}[/] ({escape(info.pool_type)})."
    )
    for output, value in sorted(info.outputs.items()):
        console.print(f"  {output} = {escape(value)}", highlight=False)
    console.print(f"Image: {info.image}", highlight=False)
    if not info.keys_stored:
        err_console.print("[yellow]Keys not stored (--skip-keys): the stored keys stay.[/]")
    registry = info.outputs.get("registry_name", "<registry>")
    login = f"`az acr login --name {registry}`"
    if info.push_block:
        next_step = (
            "Prefect Cloud starts the container groups with block "
            f"azure-container-instance-credentials/{info.push_block}; no worker to run. Log in to "
            f"the registry ({login}), deploy with `prefect deploy --prefect-file "
            "prefect.azure.yaml`, and check with `numerai-nodes doctor`."
        )
    else:
        next_step = (
            f"Log in to the registry ({login}), deploy with `prefect deploy --prefect-file "
            f"prefect.azure.yaml`, then start a worker: prefect worker start --pool "
            f"{info.pool_name}"
        )
    err_console.print(escape(next_step), highlight=False)
    for note in info.notes:
        err_console.print(f"[yellow]{escape(note)}[/]", highlight=False)


def _hidden_prompt(label: str) -> str:
    return str(typer.prompt(label, hide_input=True))


@app.command("down")
def down(pool: Pool = None, delete_storage: DeleteStorage = False, yes: Yes = False) -> None:
    """Delete the stored keys, destroy the Azure stack (registry, vault, identities) and delete
    its pool and result block. The storage account with the trained models is kept, in its
    resource group, unless --delete-storage; the next `up` adopts it."""
    from infra.azure import place

    settings = _settings(pool_name=pool)
    storage = ", the storage account with its trained models" if delete_storage else ""
    if not yes and not typer.confirm(
        f"Destroy the Azure stack{storage}, the stored keys and work pool {settings.pool_name}?"
    ):
        raise typer.Exit(1)
    for line in place.down(settings, delete_storage=delete_storage, progress=_progress):
        err_console.print(f"- {escape(line)}", highlight=False)


@app.command("status")
def status(pool: Pool = None, as_json: AsJson = False) -> None:
    """Show the stack's Terraform outputs, and whether the work pool matches them. `numerai-nodes
    doctor` also checks the credentials and the key secrets."""
    from infra.azure import place

    settings = _settings(pool_name=pool)
    print_status(place.status(settings), as_json)
