"""Key Vault's soft delete as the real service has it: a deleted secret's name cannot be set
until it is recovered (409 ObjectIsDeletedButRecoverable); `POST .../recover` brings it back.

The shared fake (tests/integration/azure_fakes.py) lets a set replace a deleted secret; this
subclass adds what `down` followed by `up` meets on a vault with purge protection.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.integration.azure_fakes import KeyVaultFake


class RecoverableKeyVaultFake(KeyVaultFake):
    """KeyVaultFake whose deleted secrets block their name until recovered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recovered: list[str] = []
        recover = Route("/deletedsecrets/{name}/recover", self._recover, methods=["POST"])
        self.app.router.routes.insert(0, recover)

    async def _secret(self, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "PUT" and name in self.deleted:
            who = self._authorize(request, self.writers)
            if isinstance(who, Response):
                return who
            message = (
                f"Secret {name} is currently in a deleted but recoverable state, and its name "
                "cannot be reused; in this state, the secret can only be recovered or purged."
            )
            error = {
                "code": "Conflict",
                "message": message,
                "innererror": {"code": "ObjectIsDeletedButRecoverable"},
            }
            return JSONResponse({"error": error}, 409)
        return await super()._secret(request)

    async def _recover(self, request: Request) -> Response:
        name = request.path_params["name"]
        who = self._authorize(request, self.writers)
        if isinstance(who, Response):
            return who
        if name not in self.deleted:
            message = f"Deleted Secret not found: {name}"
            return JSONResponse({"error": {"code": "SecretNotFound", "message": message}}, 404)
        self.secrets[name] = self.deleted.pop(name)
        self.recovered.append(name)
        return JSONResponse(self._bundle(name, self.secrets[name][-1], with_value=False))
