"""Entra ID's tokens as the real service shapes them: JWTs that name the principal's object id.

The shared fake (tests/integration/azure_fakes.py) issues opaque tokens; `up --push` reads the
service principal's object id from its token's `oid` claim, as from a real Entra ID token.
"""

from __future__ import annotations

import base64
import json
import uuid

from tests.integration.azure_fakes import EntraFake, Token


def _segment(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


class JwtEntraFake(EntraFake):
    """EntraFake whose access tokens are JWT-shaped (unsigned: nothing here verifies them)."""

    def __init__(self, tenant_id: str):
        super().__init__(tenant_id)
        self.object_ids: dict[str, str] = {}

    def add_service_principal(self, client_id: str, client_secret: str, object_id: str) -> None:
        """An application and its service principal, whose object id differs from its appId."""
        self.add_application(client_id, client_secret)
        self.object_ids[client_id] = object_id

    def _issue(self, principal: str, audience: str, grant: str) -> str:
        claims = {
            "aud": audience,
            "tid": self.tenant_id,
            "appid": principal,
            "oid": self.object_ids.get(principal, principal),
        }
        value = ".".join(
            (_segment({"typ": "JWT", "alg": "RS256"}), _segment(claims), uuid.uuid4().hex)
        )
        token = Token(principal, audience, grant)
        with self._lock:
            self._tokens[value] = token
            self.issued.append(token)
        return value
