"""Azure credentials as the SDKs and Terraform find them: the environment, a managed identity,
or the Azure CLI's login."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import ClientSecretCredential, DefaultAzureCredential
from pydantic import SecretStr

from infra.azure.errors import UP_COMMAND, AzureSettingsError, AzureUnreachable

# A service principal or workload identity in the environment: client and tenant, plus one proof.
_PRINCIPAL = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID")
_PROOFS = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE")
_MANAGED_IDENTITY = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT")
_SUBSCRIPTION_ENV = ("ARM_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID")
# A token for Azure Resource Manager: what the push pool's service principal is for.
_ARM_SCOPE = "https://management.azure.com/.default"


def default_credential() -> TokenCredential:
    """Azure's usual chain: a service principal or workload identity from the environment, a
    managed identity, then the Azure CLI login (`az login`)."""
    return DefaultAzureCredential()


def credential_source() -> str | None:
    """Where DefaultAzureCredential will find credentials, seen without a network call."""
    if all(os.environ.get(name) for name in _PRINCIPAL) and any(
        os.environ.get(name) for name in _PROOFS
    ):
        return f"a service principal from the environment (AZURE_CLIENT_ID {_client_id()})"
    if any(os.environ.get(name) for name in _MANAGED_IDENTITY):
        return "a managed identity (IDENTITY_ENDPOINT)"
    if _cli_subscriptions():
        return f"the Azure CLI login ({_cli_dir() / 'azureProfile.json'})"
    return None


def default_subscription() -> str | None:
    """The subscription Terraform would use: ARM_SUBSCRIPTION_ID or AZURE_SUBSCRIPTION_ID, else
    the Azure CLI's default (`az account show`)."""
    for name in _SUBSCRIPTION_ENV:
        if os.environ.get(name):
            return os.environ[name]
    defaults = [sub.get("id") for sub in _cli_subscriptions() if sub.get("isDefault")]
    return next((str(found) for found in defaults if found), None)


def service_principal_object_id(tenant_id: str, client_id: str, client_secret: SecretStr) -> str:
    """Sign in as a service principal, which proves its secret, and return its object id (the
    `oid` claim of its token), the id a role is assigned to. No message shows the secret."""
    fix = (
        f"Check the appId and tenant, and that the secret is the password `az ad sp "
        f"create-for-rbac` printed (`az ad sp credential reset --id {client_id}` makes a new "
        f"one), then run `{UP_COMMAND} --push` again."
    )
    try:
        credential = ClientSecretCredential(tenant_id, client_id, client_secret.get_secret_value())
    except ValueError as exc:  # a tenant id azure-identity refuses before any request
        raise AzureSettingsError(f"Tenant id {tenant_id!r} is not valid ({exc}). {fix}") from None
    try:
        token = credential.get_token(_ARM_SCOPE).token
    except ClientAuthenticationError as exc:
        code = re.search(r"AADSTS\d+", str(exc))
        raise AzureSettingsError(
            f"Service principal {client_id} could not sign in to tenant {tenant_id} "
            f"({code.group(0) if code else type(exc).__name__}). {fix}"
        ) from None
    except ServiceRequestError as exc:
        raise AzureUnreachable(
            f"Could not reach Microsoft Entra ID to sign in as service principal {client_id} "
            f"({type(exc).__name__}). Check the network, then run `{UP_COMMAND} --push` again."
        ) from None
    finally:
        credential.close()
    object_id = _claims(token).get("oid")
    if not isinstance(object_id, str) or not object_id:
        raise AzureSettingsError(
            f"Service principal {client_id} signed in, but its token names no object id "
            f"(`oid`). {fix}"
        )
    return object_id.lower()


def _claims(token: str) -> dict:
    """The claims of a JWT, unverified: it came from Entra ID over TLS, in answer to us."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _client_id() -> str:
    return os.environ.get("AZURE_CLIENT_ID", "")


def _cli_dir() -> Path:
    return Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")


def _cli_subscriptions() -> list[dict]:
    """The subscriptions of the Azure CLI's login; empty when it is not logged in."""
    profile = _cli_dir() / "azureProfile.json"
    try:
        # The CLI writes the file with a byte-order mark.
        found = json.loads(profile.read_text(encoding="utf-8-sig")).get("subscriptions")
    except (OSError, ValueError, AttributeError):
        return []
    return [sub for sub in found or [] if isinstance(sub, dict)]
