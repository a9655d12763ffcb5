"""The Numerai keys in Key Vault: set, check and delete the two secrets through its API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient
from pydantic import SecretStr

from flows.settings import PUBLIC_ID_ENV, SECRET_KEY_ENV
from infra.azure.credentials import default_credential
from infra.azure.errors import UP_COMMAND, AzureStackError, AzureUnreachable, NoAzureCredentials

# Environment variable -> the Terraform output naming its Key Vault secret.
KEY_OUTPUTS = {PUBLIC_ID_ENV: "public_id_secret", SECRET_KEY_ENV: "secret_key_secret"}
SecretState = Literal["set", "missing", "disabled", "empty"]
_FORBIDDEN = 403
_RBAC_POLL_SECONDS = 10.0


class KeyVault:
    """The secret calls the stack needs on one vault; no value ever reaches a message or a log.

    `rbac_wait_seconds`: a role granted by the `apply` just before takes minutes to reach Key
    Vault, so a refused write is tried again until then.
    """

    def __init__(
        self,
        vault_url: str,
        credential: TokenCredential | None = None,
        *,
        rbac_wait_seconds: float = 0.0,
        progress: Callable[[str], None] | None = None,
        **client_options: Any,
    ):
        self.vault_url = vault_url
        self.rbac_wait_seconds = rbac_wait_seconds
        self.progress = progress or (lambda line: None)
        # A credential made here is closed with the client; one passed in belongs to the caller.
        self._owned = None if credential is not None else default_credential()
        self._client = SecretClient(vault_url, credential or self._owned, **client_options)

    def __enter__(self) -> KeyVault:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections (and the credential's, when made here)."""
        self._client.close()
        close = getattr(self._owned, "close", None)
        if close is not None:
            close()

    def put(self, name: str, value: SecretStr) -> None:
        """Set `value` as the secret's new version; a secret `down` deleted is recovered first."""
        action = f"set secret '{name}'"
        deadline = time.monotonic() + self.rbac_wait_seconds
        while True:
            try:
                with self._errors(action):
                    self._set(name, value)
                return
            except _Refused:
                if time.monotonic() >= deadline:
                    raise self._forbidden(action) from None
            except _Missing:
                raise self._failed(action, "404 Not Found") from None
            self.progress(f"Key Vault refused secret {name}: its new role may still be spreading")
            time.sleep(min(_RBAC_POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))

    def state(self, name: str) -> SecretState:
        """Whether the secret is set, missing, disabled or empty (its value is never returned)."""
        action = f"read secret '{name}'"
        try:
            with self._errors(action):
                secret = self._client.get_secret(name)
        except _Refused:
            raise self._forbidden(action) from None
        except _Missing:
            return "missing"
        if secret.properties.enabled is False:
            return "disabled"
        return "set" if (secret.value or "").strip() else "empty"

    def delete(self, name: str) -> bool:
        """Delete the secret (soft delete: a later `put` recovers it); False when there was none."""
        action = f"delete secret '{name}'"
        try:
            with self._errors(action):
                self._client.begin_delete_secret(name)
        except _Refused:
            raise self._forbidden(action) from None
        except _Missing:
            return False
        return True

    def _set(self, name: str, value: SecretStr) -> None:
        try:
            self._client.set_secret(name, value.get_secret_value())
        except ResourceExistsError:
            # Deleted but recoverable (purge protection): a new version needs it back first.
            self._client.begin_recover_deleted_secret(name, _polling_interval=1).wait()
            self._client.set_secret(name, value.get_secret_value())

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Azure SDK errors as the stack's errors: the cause and the fix, never a request body."""
        try:
            yield
        except ResourceNotFoundError:
            raise _Missing() from None
        except ClientAuthenticationError as exc:
            raise NoAzureCredentials(
                f"no usable Azure credentials to {action} in {self.vault_url} "
                f"({type(exc).__name__}). Run `az login` (or set AZURE_CLIENT_ID, AZURE_TENANT_ID "
                f"and AZURE_CLIENT_SECRET for a service principal), then run `{UP_COMMAND}` again."
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise AzureUnreachable(
                f"Could not reach Key Vault {self.vault_url} to {action} ({type(exc).__name__}). "
                f"Check the network, then run `{UP_COMMAND}` again."
            ) from None
        except HttpResponseError as exc:
            if exc.status_code == _FORBIDDEN:
                raise _Refused() from None
            raise self._failed(action, f"{exc.status_code}: {_azure_error(exc)}") from None

    def _failed(self, action: str, cause: str) -> AzureStackError:
        return AzureStackError(
            f"Key Vault {self.vault_url} could not {action} ({cause}). Check the vault exists "
            f"(`{UP_COMMAND}` creates it), then run it again."
        )

    def _forbidden(self, action: str) -> AzureStackError:
        return AzureStackError(
            f"Key Vault {self.vault_url} refused to {action} (403 Forbidden). The identity running "
            "this needs the role Key Vault Secrets Officer on the vault: the stack grants it to "
            f"whoever runs `{UP_COMMAND}`, and a new role takes a few minutes to apply. Wait, "
            "then run it again."
        )


class _Refused(Exception):
    """A 403 from Key Vault (inside this module only: it becomes an AzureStackError)."""


class _Missing(Exception):
    """A 404 from Key Vault (inside this module only)."""


def _azure_error(exc: HttpResponseError) -> str:
    """The error code and message Azure sent, else the reason phrase."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return ": ".join(str(part) for part in (code, message) if part)
    return str(exc.reason or "error")
