"""The Numerai keys in Secret Manager: Google credentials and the two REST calls the stack needs."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import google.auth
import httpx
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import Request

from infra.gcp.errors import UP_COMMAND, GcpStackError, GcpUnreachable, NoGcpCredentials

_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def adc_token() -> str:
    """An OAuth access token from Application Default Credentials."""
    try:
        credentials, _ = google.auth.default(scopes=_SCOPES)
        credentials.refresh(Request())
    except GoogleAuthError as exc:
        raise NoGcpCredentials(
            f"No usable Google credentials ({type(exc).__name__}). Run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS, then "
            f"run `{UP_COMMAND}` again."
        ) from None
    return credentials.token


class SecretManager:
    """The two Secret Manager REST calls the stack needs: add a version, and see one exists."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token or adc_token
        self.transport = transport

    def add_version(self, project: str, secret: str, value: str) -> str:
        """Store `value` as the secret's new latest version; returns the version's name."""
        payload = base64.b64encode(value.encode()).decode()
        path = f"/v1/projects/{project}/secrets/{secret}:addVersion"
        with self._client() as client:
            response = send(client, "POST", path, json={"payload": {"data": payload}})
        if response.status_code != 200:
            raise GcpStackError(
                f"Secret Manager refused a new version of secret '{secret}' in project "
                f"'{project}' ({response.status_code}: {google_error(response)}). Check you may "
                f"add secret versions there (roles/secretmanager.secretVersionAdder), then run "
                f"`{UP_COMMAND}` again."
            )
        return response.json().get("name", "")

    def has_version(self, project: str, secret: str) -> bool:
        """Whether the secret has an enabled latest version (its value is not read)."""
        path = f"/v1/projects/{project}/secrets/{secret}/versions/latest"
        with self._client() as client:
            response = send(client, "GET", path)
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise GcpStackError(
                f"Could not read secret '{secret}' ({response.status_code}: "
                f"{google_error(response)})."
            )
        return response.json().get("state") == "ENABLED"

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token()}"},
            transport=self.transport,
            timeout=30,
        )


def send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to a Google API; a network failure becomes GcpUnreachable, without the body."""
    try:
        return client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        # The request (and its body, a key) stays out of the message.
        raise GcpUnreachable(
            f"Could not reach {client.base_url} ({type(exc).__name__}). Check the network, then "
            f"run `{UP_COMMAND}` again."
        ) from None


def google_error(response: httpx.Response) -> str:
    """The message of a Google API error response, else its reason phrase."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase
