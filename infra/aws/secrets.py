"""The Numerai key secrets in Secrets Manager: their names and ARNs, putting and deleting keys."""

from __future__ import annotations

from typing import Any

from boto3.session import Session
from botocore.exceptions import ClientError

from flows.settings import PUBLIC_ID_ENV, SECRET_KEY_ENV
from infra.aws.cloudformation import aws_message, stack_outputs
from infra.aws.errors import AwsError
from infra.cloud import NumeraiKeys

# The value the stack creates the key secrets with; `up` replaces it with the real keys.
PLACEHOLDER = "numerai-nodes-placeholder"
# The environment variable of each key -> the stack output holding its secret's ARN.
KEY_SECRETS = {
    PUBLIC_ID_ENV: "NumeraiPublicIdSecretArn",
    SECRET_KEY_ENV: "NumeraiSecretKeySecretArn",
}
DEFAULT_SECRETS_PREFIX = "numerai-nodes/"


def secret_names(stack: dict[str, Any]) -> dict[str, str]:
    """The key secrets' names, from the stack's SecretsPrefix parameter."""
    prefix = next(
        (
            parameter["ParameterValue"]
            for parameter in stack.get("Parameters", [])
            if parameter["ParameterKey"] == "SecretsPrefix"
        ),
        DEFAULT_SECRETS_PREFIX,
    )
    return {env_name: f"{prefix}{env_name}" for env_name in KEY_SECRETS}


def secret_arns(aws: Session, stack: dict[str, Any]) -> dict[str, str | None]:
    """Each key secret's ARN (from the outputs, else looked up by name); None when missing."""
    outputs = stack_outputs(stack)
    client = aws.client("secretsmanager")
    found: dict[str, str | None] = {}
    for env_name, name in secret_names(stack).items():
        arn = outputs.get(KEY_SECRETS[env_name])
        if arn is None:
            try:
                arn = client.describe_secret(SecretId=name)["ARN"]
            except ClientError:
                arn = None
        found[env_name] = arn
    return found


def put_keys(aws: Session, stack: dict[str, Any], keys: NumeraiKeys | None) -> dict[str, str]:
    """Put the keys into their secrets (creating a secret the stack lacks); env name -> ARN.

    Without `keys` the secrets keep their values; a secret created here holds the placeholder.
    """
    client = aws.client("secretsmanager")
    names = secret_names(stack)
    values = keys.by_env_name() if keys else {}
    result: dict[str, str] = {}
    for env_name, arn in secret_arns(aws, stack).items():
        value = values.get(env_name)
        if arn is None:
            # A stack deployed from an older template (or an emulator) lacks the secret.
            created = client.create_secret(
                Name=names[env_name],
                Description=f"Numerai API key {env_name} of the nodes.",
                SecretString=value.get_secret_value() if value else PLACEHOLDER,
            )
            result[env_name] = created["ARN"]
            continue
        result[env_name] = arn
        if value is None:
            continue
        try:
            current = client.get_secret_value(SecretId=arn).get("SecretString")
        except ClientError:
            current = None
        if current == value.get_secret_value():
            continue
        try:
            client.put_secret_value(SecretId=arn, SecretString=value.get_secret_value())
        except ClientError as exc:
            raise AwsError(
                f"Could not put {env_name} into secret {names[env_name]}: {aws_message(exc)}. "
                "Check that your AWS identity may write it."
            ) from None
    return result


def delete_secrets(aws: Session, stack: dict[str, Any]) -> list[str]:
    """Delete the key secrets at once, without recovery, so a later `up` may recreate them."""
    client = aws.client("secretsmanager")
    deleted = []
    for name in secret_names(stack).values():
        try:
            client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError:
            continue
        deleted.append(name)
    return deleted
