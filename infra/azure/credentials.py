"""Azure credentials as the SDKs and Terraform find them: the environment, a managed identity,
or the Azure CLI's login."""

from __future__ import annotations

import json
import os
from pathlib import Path

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential

# A service principal or workload identity in the environment: client and tenant, plus one proof.
_PRINCIPAL = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID")
_PROOFS = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE")
_MANAGED_IDENTITY = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT")
_SUBSCRIPTION_ENV = ("ARM_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID")


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
