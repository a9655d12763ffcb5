"""The nodes on Azure: `up`, `down` and `status` of the Terraform stack, its keys and its pool."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from prefect_azure import AzureBlobStorageCredentials, AzureContainerInstanceCredentials
from prefect_azure.blob_storage import AzureBlobStorageContainer
from pydantic import SecretStr

from deployments import recovery
from infra.azure.credentials import default_subscription, service_principal_object_id
from infra.azure.errors import UP_COMMAND, AzureSettingsError, StackOutputsMissing, TerraformFailed
from infra.azure.pool import (
    ACI_PUSH,
    IMAGE_VARIABLE,
    POOL_TYPE,
    image_uri,
    missing_outputs,
    pool_mismatches,
    stack_pool_template,
)
from infra.azure.secrets import KEY_OUTPUTS, KeyVault
from infra.azure.settings import PUSH_ENV, AzureSettings
from infra.azure.terraform import Progress, Terraform, no_progress, stack_variables
from infra.cloud import (
    NumeraiKeys,
    PlaceStatus,
    remove_pool_and_block,
)
from infra.pools import (
    block_id_by_name,
    delete_block,
    require_prefect_api,
    save_block,
    set_variable,
    upsert_pool,
)
from infra.terraform import outputs_or_empty, terraform_status

PLACE = "azure"
BLOCK_TYPE = "azure-blob-storage-container"
# What `down` keeps (the trained models) unless told otherwise: Terraform forgets these before
# `destroy`, and the next `up` imports them again.
KEPT_ADDRESSES = (
    "azurerm_resource_group.nodes",
    "azurerm_storage_account.results",
    "azurerm_storage_container.results",
    "azurerm_storage_management_policy.results",
)
# Written by `down` in Terraform's working directory when it keeps the storage; `up` adopts it.
_KEPT_STORAGE = "kept-storage.json"


@dataclass(frozen=True)
class PushPrincipal:
    """The push pool's service principal as given: `az ad sp create-for-rbac`'s appId, tenant
    and password. Its repr never shows the secret."""

    client_id: str
    tenant_id: str
    client_secret: SecretStr


@dataclass(frozen=True)
class UpResult:
    """What `up` built: the Terraform outputs, the pool and its image."""

    outputs: dict[str, str]
    pool_name: str
    image: str
    pool_created: bool = False
    keys_stored: bool = False
    pool_type: str = POOL_TYPE
    push_block: str | None = None  # the AzureContainerInstanceCredentials block of a push pool
    notes: tuple[str, ...] = ()  # what the user should know: push is available, an unused identity

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def up(
    settings: AzureSettings,
    keys: NumeraiKeys | None,
    progress: Progress = no_progress,
    *,
    credential: TokenCredential | None = None,
    push: bool | None = None,
    ask: Callable[[str], str] | None = None,
) -> UpResult:
    """Apply the Terraform stack, put any keys given into Key Vault, save the result block,
    upsert the pool. Without `keys` the secrets stay as they are.

    `push` makes an azure-container-instance:push pool (Prefect Cloud only) and False a hybrid
    one; None keeps what the stack was applied with. A push pool's service principal comes from
    the settings, else from `ask(label)` (hidden prompts), else the block saved before.
    """
    api_url = require_prefect_api()  # before the stack is applied, not after
    terraform = Terraform(settings, progress)
    terraform.init()
    previous = outputs_or_empty(terraform)
    recorded = previous.get("push_pool") == "true"
    push = ACI_PUSH.choose(push, recorded, api_url)
    ACI_PUSH.require_type(settings.pool_name, push)
    principal = _push_principal(settings, ask) if push else None
    principal_id = ""
    if principal is not None:
        # Signing in proves the secret before anything is built on it.
        progress(f"Signing in as service principal {principal.client_id}")
        principal_id = service_principal_object_id(
            principal.tenant_id, principal.client_id, principal.client_secret
        )
    elif push:
        principal_id = previous.get("push_principal_id", "")
        if (
            not principal_id
            or block_id_by_name(settings.push_credentials_block, ACI_PUSH.block_type) is None
        ):
            raise ACI_PUSH.credentials_missing(settings.push_credentials_block)
    variables = stack_variables(
        settings,
        resolve_subscription(settings, previous),
        settings.location,
        settings.resource_group,
        push=push,
        push_principal_id=principal_id,
    )
    _adopt_kept_storage(terraform, variables)
    terraform.apply(variables)
    (terraform.work_dir / _KEPT_STORAGE).unlink(missing_ok=True)
    outputs = terraform.outputs()
    missing = missing_outputs(outputs)
    if missing:
        raise StackOutputsMissing(
            f"The Azure stack outputs lack {', '.join(missing)}. Check the configuration in "
            f"{settings.config_dir}, then run `{UP_COMMAND}` again."
        )
    if keys is not None:
        values = keys.by_env_name()
        with _vault(outputs, credential, settings.rbac_wait_seconds, progress) as vault:
            for env, output in KEY_OUTPUTS.items():
                progress(f"Setting Key Vault secret {outputs[output]} ({env})")
                vault.put(outputs[output], values[env])
    image = image_uri(outputs, settings.image_tag)
    push_id = _push_block(settings, principal) if push else None
    template = stack_pool_template(outputs, settings, push_id)
    progress(f"Saving the AzureBlobStorageContainer block {settings.results_block}")
    _save_results_block(outputs, settings.results_block)
    pool_type = ACI_PUSH.type if push else POOL_TYPE
    progress(f"Creating or updating the work pool {settings.pool_name} ({pool_type})")
    created = upsert_pool(settings.pool_name, pool_type, template)
    if not push and recorded and delete_block(settings.push_credentials_block, ACI_PUSH.block_type):
        # Back to hybrid: the stack no longer grants the principal anything; drop its secret too.
        progress(f"Deleted block {ACI_PUSH.block_type}/{settings.push_credentials_block}")
    recovery.apply()  # crashed and silent node runs run again, on any pool
    # prefect.yaml's ACI node tags its image build with this repository.
    set_variable(IMAGE_VARIABLE, image.rsplit(":", 1)[0])
    notes = [ACI_PUSH.hint(settings.pool_name, push, api_url)]
    if push and outputs.get("worker_identity_id"):
        notes.append(
            "A push pool needs no worker, so the stack's worker identity is unused: "
            f"`{UP_COMMAND} --no-worker-identity` removes it."
        )
    return UpResult(
        outputs,
        settings.pool_name,
        image,
        created,
        keys is not None,
        pool_type=pool_type,
        push_block=settings.push_credentials_block if push else None,
        notes=tuple(note for note in notes if note),
    )


def _push_principal(
    settings: AzureSettings, ask: Callable[[str], str] | None
) -> PushPrincipal | None:
    """The service principal given in the settings (a missing part asked for in a terminal);
    None when no secret is given and a block is saved (`up` keeps it), or nothing is given."""
    client_id, tenant_id = settings.push_client_id, settings.push_tenant_id
    secret = settings.push_client_secret.get_secret_value() if settings.push_client_secret else None
    if not secret and block_id_by_name(settings.push_credentials_block, ACI_PUSH.block_type):
        return None
    if ask is not None:
        how = "`az ad sp create-for-rbac --name numerai-nodes-push` prints it"
        client_id = client_id or ask(f"appId (client id) of the push service principal ({how})")
        tenant_id = tenant_id or ask("tenant of the push service principal")
        secret = secret or ask("password (client secret) of the push service principal")
    given = [bool(part and part.strip()) for part in (client_id, tenant_id, secret)]
    if not any(given):
        return None
    if not all(given):
        lacking = [env for env, found in zip(PUSH_ENV, given, strict=True) if not found]
        raise AzureSettingsError(
            f"The push service principal lacks {', '.join(lacking)}: give all three "
            f"({ACI_PUSH.credentials_how}), then run `{UP_COMMAND} --push` again."
        )
    assert client_id and tenant_id and secret  # all three given, checked above
    return PushPrincipal(client_id.strip(), tenant_id.strip(), SecretStr(secret.strip()))


def _push_block(settings: AzureSettings, principal: PushPrincipal | None) -> str:
    """The id of the push pool's AzureContainerInstanceCredentials block: saved from the
    principal given, else the one saved before (`up` checked that it exists)."""
    name = settings.push_credentials_block
    if principal is None:
        existing = block_id_by_name(name, ACI_PUSH.block_type)
        if existing is None:
            raise ACI_PUSH.credentials_missing(name)
        return existing
    block = AzureContainerInstanceCredentials(
        client_id=principal.client_id,
        tenant_id=principal.tenant_id,
        client_secret=principal.client_secret,
    )
    return save_block(block, name)


def down(
    settings: AzureSettings,
    *,
    delete_storage: bool = False,
    progress: Progress = no_progress,
    credential: TokenCredential | None = None,
) -> list[str]:
    """Delete the keys, destroy the stack, then delete its pool and result block. Returns what
    was done.

    The storage account holds trained models and outlives the stack unless `delete_storage`:
    Terraform forgets it (and its resource group) before `destroy`, and the next `up` adopts it.
    """
    terraform = Terraform(settings, progress)
    outputs = outputs_or_empty(terraform)
    done: list[str] = []
    if not outputs:
        done.append(f"no Azure stack is applied (no Terraform state in {terraform.work_dir})")
        done += _kept_storage_note(terraform)
    else:
        terraform.init()
        subscription = outputs.get("subscription_id") or resolve_subscription(settings, outputs)
        group = outputs.get("resource_group") or settings.resource_group
        variables = stack_variables(
            settings, subscription, outputs.get("location") or settings.location, group
        )
        if outputs.get("key_vault_uri"):
            with _vault(outputs, credential, 0.0, progress) as vault:
                names = [outputs[output] for output in KEY_OUTPUTS.values()]
                deleted = [name for name in names if vault.delete(name)]
            if deleted:
                done.append(f"deleted the key secrets {', '.join(deleted)}")
        account = outputs.get("storage_account", "")
        if delete_storage:
            terraform.destroy(variables)
            done.append(f"deleted storage account {account} and the models in it")
        else:
            terraform.forget(*KEPT_ADDRESSES)
            terraform.destroy(variables)
            record = {"subscription_id": subscription, "resource_group": group, "account": account}
            (terraform.work_dir / _KEPT_STORAGE).write_text(json.dumps(record))
            done.append(
                f"kept storage account {account} (trained models) in resource group {group}; "
                "`down --delete-storage` deletes it"
            )
        done.append(f"destroyed the Azure stack in resource group {group}")
    done += remove_pool_and_block(settings.pool_name, POOL_TYPE, settings.results_block, BLOCK_TYPE)
    done += ACI_PUSH.remove(settings.pool_name, settings.push_credentials_block)
    return done


def status(settings: AzureSettings) -> PlaceStatus:
    """The stack's outputs, and whether the pool matches them."""
    return terraform_status(
        Terraform(settings),
        "Azure",
        settings.pool_name,
        missing_outputs,
        lambda template, outputs: pool_mismatches(template, outputs, settings),
    )


def resolve_subscription(settings: AzureSettings, outputs: dict[str, str]) -> str:
    """The subscription: from the settings, else the existing stack, else the environment or
    the Azure CLI's default."""
    found = settings.subscription_id or outputs.get("subscription_id") or default_subscription()
    if not found:
        raise AzureSettingsError(
            "No Azure subscription given. Pass --subscription or set "
            "NUMERAI_NODES_AZURE_SUBSCRIPTION_ID (`az account show --query id -o tsv` prints "
            f"yours), then run `{UP_COMMAND}` again."
        )
    return found


def _vault(
    outputs: dict[str, str],
    credential: TokenCredential | None,
    rbac_wait_seconds: float,
    progress: Progress,
) -> KeyVault:
    return KeyVault(
        outputs["key_vault_uri"],
        credential,
        rbac_wait_seconds=rbac_wait_seconds,
        progress=progress,
    )


def _kept_ids(kept: dict[str, str]) -> dict[str, str]:
    """The Azure resource ID of each kept Terraform address, for `terraform import`."""
    group = f"/subscriptions/{kept['subscription_id']}/resourceGroups/{kept['resource_group']}"
    account = f"{group}/providers/Microsoft.Storage/storageAccounts/{kept['account']}"
    return dict(
        zip(
            KEPT_ADDRESSES,
            (
                group,
                account,
                f"{account}/blobServices/default/containers/results",
                f"{account}/managementPolicies/default",
            ),
            strict=True,
        )
    )


def _adopt_kept_storage(terraform: Terraform, variables: dict[str, str]) -> None:
    """Import what an earlier `down` kept, so `apply` reuses it instead of failing on the names."""
    record = terraform.work_dir / _KEPT_STORAGE
    if not record.is_file():
        return
    kept = json.loads(record.read_text())
    if (kept.get("subscription_id"), kept.get("resource_group")) != (
        variables["subscription_id"],
        variables["resource_group"],
    ) or not kept.get("account"):
        return
    terraform.progress(f"Adopting storage account {kept['account']}, kept by the last `down`")
    for address, resource_id in _kept_ids(kept).items():
        try:
            terraform.adopt(address, resource_id, variables)
        except TerraformFailed:
            # Deleted by hand since, or already in the state: `apply` creates or keeps it.
            terraform.progress(f"{address} was not adopted; `apply` handles it")


def _kept_storage_note(terraform: Terraform) -> list[str]:
    record = terraform.work_dir / _KEPT_STORAGE
    if not record.is_file():
        return []
    kept = json.loads(record.read_text())
    return [
        f"storage account {kept.get('account')}, kept by an earlier `down`, remains in resource "
        f"group {kept.get('resource_group')}: `{UP_COMMAND}` adopts it, `az group delete --name "
        f"{kept.get('resource_group')}` deletes it"
    ]


def _save_results_block(outputs: dict[str, str], name: str) -> None:
    """Save the result block over the stack's container; with only an account URL, containers
    reach it as their managed identity (DefaultAzureCredential)."""
    block = AzureBlobStorageContainer(
        container_name=outputs["results_container"],
        credentials=AzureBlobStorageCredentials(account_url=outputs["blob_endpoint"]),
    )
    block.save(name, overwrite=True)
