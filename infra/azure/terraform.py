"""The Terraform CLI for the Azure stack, in `<home>/infra/azure` (shared runner, Azure errors)."""

from __future__ import annotations

from pathlib import Path

from infra.azure.errors import (
    UP_COMMAND,
    AzureSettingsError,
    TerraformConfigMissing,
    TerraformFailed,
    TerraformMissing,
)
from infra.azure.settings import PUSH_ENV, AzureSettings
from infra.terraform import Progress, TerraformCli, TerraformPlace, no_progress

__all__ = ["AZURE", "Progress", "Terraform", "no_progress", "stack_variables"]

AZURE = TerraformPlace(
    name="azure",
    env_prefix="NUMERAI_NODES_AZURE_",
    up_command=UP_COMMAND,
    causes="credentials, subscription, quota, a name taken",
    missing=TerraformMissing,
    config_missing=TerraformConfigMissing,
    failed=TerraformFailed,
    settings_error=AzureSettingsError,
)


class Terraform(TerraformCli):
    """The Terraform CLI in `<home>/infra/azure`, with the configuration the settings name."""

    def __init__(
        self,
        settings: AzureSettings,
        progress: Progress = no_progress,
        work_dir: Path | None = None,
    ):
        super().__init__(AZURE, settings.terraform, settings.config_dir, progress, work_dir)
        self.settings = settings

    def _env(self) -> dict[str, str]:
        # The push pool's client secret goes into its Prefect block only: Terraform never sees it.
        env = super()._env()
        env.pop(PUSH_ENV[2], None)
        return env


def stack_variables(
    settings: AzureSettings,
    subscription_id: str,
    location: str,
    resource_group: str,
    *,
    push: bool = False,
    push_principal_id: str = "",
) -> dict[str, str]:
    """The Terraform variables of the stack (never a key or a client secret: the keys go to Key
    Vault by its API, the push pool's secret to its Prefect block). `push_principal_id` is the
    object id of the push pool's service principal, which the stack grants the worker role."""
    return {
        "subscription_id": subscription_id,
        "location": location,
        "resource_group": resource_group,
        "name_prefix": settings.name_prefix,
        "create_worker_identity": str(settings.create_worker_identity).lower(),
        "push_pool": str(push).lower(),
        "push_principal_id": push_principal_id,
    }
