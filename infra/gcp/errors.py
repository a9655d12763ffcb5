"""The expected failures of the GCP stack, and the commands their messages point to."""

from __future__ import annotations

from infra.cloud import CloudError

UP_COMMAND = "numerai-nodes infra gcp up"
DOWN_COMMAND = "numerai-nodes infra gcp down"


class GcpStackError(CloudError):
    """An expected failure of the GCP stack; the message names the cause and the fix."""


class GcpSettingsError(GcpStackError, ValueError):
    """The GCP settings are missing a value or do not fit together."""


class NoGcpCredentials(GcpStackError, PermissionError):
    """No usable Google credentials (Application Default Credentials)."""


class GcpUnreachable(GcpStackError, ConnectionError):
    """A Google API does not answer. Worth retrying."""

    transient = True


class StackOutputsMissing(GcpStackError, LookupError):
    """The applied stack lacks an output the work pool needs."""


class CredentialsBlockMissing(GcpStackError, LookupError):
    """The GcpCredentials block the settings name is not on the Prefect API."""


class TerraformMissing(GcpStackError, FileNotFoundError):
    """The Terraform binary is not installed or not where the settings say."""


class TerraformConfigMissing(GcpStackError, FileNotFoundError):
    """The directory the settings name holds no Terraform configuration."""


class TerraformFailed(GcpStackError):
    """A Terraform command exited non-zero."""
