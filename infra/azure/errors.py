"""The expected failures of the Azure stack, and the commands their messages point to."""

from __future__ import annotations

from infra.cloud import CloudError

UP_COMMAND = "numerai-nodes infra azure up"
DOWN_COMMAND = "numerai-nodes infra azure down"


class AzureStackError(CloudError):
    """An expected failure of the Azure stack; the message names the cause and the fix."""


class AzureSettingsError(AzureStackError, ValueError):
    """The Azure settings are missing a value or do not fit together."""


class NoAzureCredentials(AzureStackError, PermissionError):
    """No usable Azure credentials (Azure CLI login, a service principal, a managed identity)."""


class AzureUnreachable(AzureStackError, ConnectionError):
    """An Azure API does not answer. Worth retrying."""

    transient = True


class StackOutputsMissing(AzureStackError, LookupError):
    """The applied stack lacks an output the work pool needs."""


class CredentialsBlockMissing(AzureStackError, LookupError):
    """The Azure credentials block the settings name is not on the Prefect API."""


class TerraformMissing(AzureStackError, FileNotFoundError):
    """The Terraform binary is not installed or not where the settings say."""


class TerraformConfigMissing(AzureStackError, FileNotFoundError):
    """The directory the settings name holds no Terraform configuration."""


class TerraformFailed(AzureStackError):
    """A Terraform command exited non-zero."""
