"""The expected failures on AWS, and the commands their messages point to."""

from __future__ import annotations

from infra.cloud import CloudError

UP_COMMAND = "numerai-nodes infra aws up"
DOWN_COMMAND = "numerai-nodes infra aws down"
STATUS_COMMAND = "numerai-nodes infra aws status"


class AwsError(CloudError):
    """An expected failure on AWS; the message names the cause and the fix."""


class NoAwsCredentials(AwsError, PermissionError):
    """boto3 finds no usable AWS credentials (or no region)."""


class AwsUnreachable(AwsError, ConnectionError):
    """AWS (or the endpoint in AWS_ENDPOINT_URL) does not answer. Worth retrying."""

    transient = True


class StackFailed(AwsError):
    """The stack is, or ended, in a failed or rolled-back state."""


class AwsSettingsError(AwsError, ValueError):
    """The AWS settings or options do not fit together."""
