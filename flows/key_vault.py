"""Numerai API keys from an Azure Key Vault, read with the process's Azure identity."""

from __future__ import annotations

import functools

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from flows.errors import NodeError
from flows.settings import KEY_VAULT_URL_ENV

# The Key Vault secrets holding the keys (Key Vault names allow letters, digits and hyphens).
PUBLIC_ID_SECRET = "numerai-public-id"
SECRET_KEY_SECRET = "numerai-secret-key"


class KeyVaultError(NodeError, PermissionError):
    """The Key Vault the settings name does not give the keys: a secret is missing, or the
    process's Azure identity may not read it. The message names the vault, secret and fix."""


class KeyVaultUnreachable(NodeError, ConnectionError):
    """The Key Vault does not answer. Worth retrying."""

    transient = True


# A node's process lives for one flow run, whose tasks each connect: read the vault once.
@functools.cache
def key_vault_keys(vault_url: str) -> tuple[str, str]:
    """Both keys from the Key Vault at `vault_url`, read with DefaultAzureCredential (on ACI the
    container group's managed identity, named by AZURE_CLIENT_ID)."""
    with (
        DefaultAzureCredential() as credential,
        SecretClient(vault_url, credential) as client,
    ):
        public_id = _vault_secret(client, vault_url, PUBLIC_ID_SECRET)
        secret_key = _vault_secret(client, vault_url, SECRET_KEY_SECRET)
    return public_id, secret_key


def _vault_secret(client: SecretClient, vault_url: str, name: str) -> str:
    """One secret's value, or an error naming the vault, the secret and the fix."""
    problem = None
    try:
        value = client.get_secret(name).value
    except AzureError as exc:
        problem = _vault_problem(exc, vault_url, name)
    # Raised out here, the SDK's error is not kept as context: its text may quote a token's
    # claims, and its response holds a connection open.
    if problem is not None:
        raise problem
    if not value:
        raise KeyVaultError(
            f"The secret '{name}' in Key Vault {vault_url} is empty. Store the key in it."
        )
    return value


def _vault_problem(exc: Exception, vault_url: str, name: str) -> NodeError:
    """The NodeError for an Azure SDK error reading secret `name` (never its value)."""
    where = f"secret '{name}' of Key Vault {vault_url} ({KEY_VAULT_URL_ENV})"
    if isinstance(exc, ResourceNotFoundError):
        return KeyVaultError(
            f"No {where}. Store the key there under that name, e.g. `az keyvault secret set "
            f"--vault-name <vault> --name {name} --file <file holding the key>`."
        )
    if isinstance(exc, ClientAuthenticationError):
        return KeyVaultError(
            f"No Azure identity could sign in to read the {where}. On Azure Container "
            "Instances give the container group its managed identity and set AZURE_CLIENT_ID to "
            "that identity's client id (the Azure pool does both); elsewhere sign in with "
            f"`az login`, or unset {KEY_VAULT_URL_ENV} and set NUMERAI_PUBLIC_ID and "
            "NUMERAI_SECRET_KEY."
        )
    if isinstance(exc, HttpResponseError) and exc.status_code == 403:
        return KeyVaultError(
            f"This Azure identity may not read the {where}. Grant it the 'Key Vault Secrets "
            "User' role on the vault (the Azure stack grants it to the job identity)."
        )
    if isinstance(exc, HttpResponseError):
        return KeyVaultError(
            f"Key Vault {vault_url} answered HTTP {exc.status_code} for the {where}. Check the "
            f"vault in the Azure portal, or unset {KEY_VAULT_URL_ENV} to use other keys."
        )
    return KeyVaultUnreachable(
        f"Could not reach Key Vault {vault_url} ({KEY_VAULT_URL_ENV}) to read secret "
        f"'{name}' ({type(exc).__name__}). Check the URL and the network; the task retries."
    )
