"""Where the Azure stack lives and how it is built: the settings of `infra azure`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.presets import Preset

# Package data: the Terraform configuration sits beside this module, in an installed package too.
CONFIG_DIR = Path(__file__).resolve().parent
RESULTS_BLOCK = "numerai-nodes-azure-results"
POOL_NAME = "azure"
PUSH_CREDENTIALS_BLOCK = "numerai-nodes-aci-push"
# Where `up --push` reads the push pool's service principal: client id, tenant, secret (the
# settings' push_* fields, by their environment names).
PUSH_ENV = (
    "NUMERAI_NODES_AZURE_PUSH_CLIENT_ID",
    "NUMERAI_NODES_AZURE_PUSH_TENANT_ID",
    "NUMERAI_NODES_AZURE_PUSH_CLIENT_SECRET",
)


class AzureSettings(BaseSettings):
    """Where the Azure stack lives and how it is built; env prefix NUMERAI_NODES_AZURE_."""

    model_config = SettingsConfigDict(
        env_prefix="NUMERAI_NODES_AZURE_", env_file=".env", extra="ignore"
    )

    subscription_id: str | None = Field(
        None,
        description="Azure subscription ID. Unset: the subscription of the existing stack, else "
        "ARM_SUBSCRIPTION_ID or AZURE_SUBSCRIPTION_ID.",
    )
    location: str = Field(
        "eastus", description="Azure region of the containers, the registry, vault and storage."
    )
    resource_group: str = Field(
        "numerai-nodes", description="Resource group the stack creates and keeps everything in."
    )
    name_prefix: str = Field(
        "numerai-nodes",
        description="Prefix of the registry, storage account, vault and identity names.",
    )
    create_worker_identity: bool = Field(
        True,
        description="Also create a managed identity for an ACI worker (creates container groups "
        "in the resource group, as the job identity only).",
    )
    pool_name: str = Field(
        POOL_NAME, description="The `azure-container-instance` work pool the stack owns."
    )
    terraform: str = Field("terraform", description="Terraform binary: a name on PATH or a path.")
    config_dir: Path = Field(
        CONFIG_DIR,
        description="The Terraform configuration (*.tf) to apply. It is copied into "
        "<NUMERAI_NODES_HOME>/infra/azure, where Terraform runs and keeps its state.",
    )
    image_tag: str = Field("latest", description="Tag of the node image the pool runs.")
    preset: Preset = Field("gen-m", description="Size preset of the pool's default CPU and memory.")
    results_block: str = Field(
        RESULTS_BLOCK,
        description="Name of the AzureBlobStorageContainer block that holds the flow results.",
    )
    rbac_wait_seconds: float = Field(
        300.0,
        description="How long `up` keeps trying to store the keys while Key Vault refuses: the "
        "role the stack just granted takes minutes to apply.",
    )
    credentials_block: str | None = Field(
        None,
        description="AzureContainerInstanceCredentials block the worker uses. Unset: the "
        "worker's DefaultAzureCredential (its managed identity, or `az login`).",
    )
    push_credentials_block: str = Field(
        PUSH_CREDENTIALS_BLOCK,
        description="Name of the AzureContainerInstanceCredentials block an "
        "azure-container-instance:push pool starts flow runs with.",
    )
    push_client_id: str | None = Field(
        None,
        description="Application (client) id of the push pool's service principal, for "
        "`up --push` (the appId `az ad sp create-for-rbac` prints).",
    )
    push_tenant_id: str | None = Field(
        None, description="Tenant of the push pool's service principal, for `up --push`."
    )
    push_client_secret: SecretStr | None = Field(
        None,
        description="Client secret of the push pool's service principal, for `up --push` "
        "(stored in the block only, never printed).",
    )
