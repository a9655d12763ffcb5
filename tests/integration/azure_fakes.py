"""Loopback fakes of Azure: Entra ID and managed identities, Key Vault, and ARM running ACI groups.

Each fake is an ASGI `app` to serve with `servers.UvicornThread`. The HTTPS hosts (Entra's
`login.microsoftonline.com`, a vault's `<name>.vault.azure.net`, ARM's `management.azure.com`) are
reached through `tls_proxy.InterceptingProxy`, so Azure's SDKs keep their real endpoints:
`HTTPS_PROXY` names the proxy and `REQUESTS_CA_BUNDLE` its test CA. The managed identity endpoint
is plain HTTP on loopback, as App Service serves it: `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`
make azure-identity's ManagedIdentityCredential (and so DefaultAzureCredential) use it.

Tokens are opaque strings the Entra fake issued and the other fakes check with it: each names
its principal (an application's or a managed identity's client id) and its audience.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.integration.containers import Container, Launcher, exit_code

LOGIN_HOST = "login.microsoftonline.com"
ARM_HOST = "management.azure.com"
ARM_AUDIENCE = "https://management.azure.com"
VAULT_AUDIENCE = "https://vault.azure.net"
IDENTITY_PATH = "/msi/token"
_TOKEN_SECONDS = 3600


def _app(routes: list[Route]) -> Starlette:
    """An ASGI app that answers each path as routed: no redirect to another slash (Azure sends
    none, and a redirect would leave HTTPS)."""
    app = Starlette(routes=routes)
    app.router.redirect_slashes = False
    return app


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _iso(moment: datetime.datetime, timespec: str = "milliseconds") -> str:
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def _audience(scope_or_resource: str) -> str:
    """`https://vault.azure.net/.default` and `https://vault.azure.net/` -> `https://vault.azure.net`."""
    return scope_or_resource.split()[0].removesuffix("/.default").rstrip("/")


@dataclass(frozen=True)
class Token:
    """One access token the Entra fake issued: to whom, for which audience, and how."""

    principal: str
    audience: str
    grant: str  # "client_credentials" or "managed_identity"


class EntraFake:
    """Microsoft Entra ID for one tenant: OAuth2 v2 client credentials, the discovery documents
    MSAL reads first, and an App-Service-style managed identity endpoint (`IDENTITY_PATH`).

    `add_application` registers a client id and secret (a service principal).
    `grant_identities` registers the user-assigned identities one machine may use and returns the
    `IDENTITY_HEADER` secret that machine presents. `principal` checks a bearer token.
    """

    def __init__(self, tenant_id: str):
        self.tenant_id = tenant_id
        self.applications: dict[str, str] = {}
        self.issued: list[Token] = []
        self._tokens: dict[str, Token] = {}
        self._machines: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        self.app = _app(
            [
                Route(IDENTITY_PATH, self._managed_identity),
                Route("/{tenant}/discovery/instance", self._instance_discovery),
                Route("/{tenant}/v2.0/.well-known/openid-configuration", self._openid),
                Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            ]
        )

    @property
    def authority(self) -> str:
        return f"https://{LOGIN_HOST}/{self.tenant_id}"

    def add_application(self, client_id: str, client_secret: str) -> None:
        self.applications[client_id] = client_secret

    def grant_identities(self, client_ids: Iterable[str]) -> str:
        """The IDENTITY_HEADER of a machine that holds these user-assigned identities."""
        header = secrets.token_hex(16)
        with self._lock:
            self._machines[header] = frozenset(client_ids)
        return header

    def principal(self, authorization: str, audience: str) -> str | None:
        """Who a `Bearer <token>` header speaks for, if the fake issued it for `audience`."""
        token = self._tokens.get(authorization.removeprefix("Bearer ").strip())
        return token.principal if token is not None and token.audience == audience else None

    def _issue(self, principal: str, audience: str, grant: str) -> str:
        value = f"fake-entra-{uuid.uuid4().hex}"
        token = Token(principal, audience, grant)
        with self._lock:
            self._tokens[value] = token
            self.issued.append(token)
        return value

    def _known_tenant(self, request: Request) -> bool:
        return request.path_params["tenant"] in (self.tenant_id, "common", "organizations")

    async def _instance_discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "tenant_discovery_endpoint": (
                    f"{self.authority}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {
                        "preferred_network": LOGIN_HOST,
                        "preferred_cache": "login.windows.net",
                        "aliases": [LOGIN_HOST, "login.windows.net", "sts.windows.net"],
                    }
                ],
            }
        )

    async def _openid(self, request: Request) -> Response:
        if not self._known_tenant(request):
            return _oauth_error(400, "invalid_tenant", "AADSTS90002: Tenant not found.")
        base = f"https://{LOGIN_HOST}/{request.path_params['tenant']}"
        return JSONResponse(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "issuer": f"https://{LOGIN_HOST}/{self.tenant_id}/v2.0",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "response_types_supported": ["code", "id_token", "token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "tenant_region_scope": "EU",
            }
        )

    async def _token(self, request: Request) -> Response:
        if not self._known_tenant(request):
            return _oauth_error(400, "invalid_tenant", "AADSTS90002: Tenant not found.")
        form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "Only client_credentials.")
        client_id = form.get("client_id", "")
        expected = self.applications.get(client_id)
        if expected is None or not secrets.compare_digest(expected, form.get("client_secret", "")):
            return _oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret.")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return _oauth_error(400, "invalid_scope", "AADSTS1002012: Use <resource>/.default.")
        token = self._issue(client_id, _audience(scope), "client_credentials")
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": _TOKEN_SECONDS,
                "ext_expires_in": _TOKEN_SECONDS,
                "access_token": token,
            }
        )

    async def _managed_identity(self, request: Request) -> Response:
        allowed = self._machines.get(request.headers.get("x-identity-header", ""))
        if allowed is None:
            return JSONResponse({"statusCode": 401, "message": "Invalid identity header."}, 401)
        client_id = request.query_params.get("client_id")
        if client_id is None and len(allowed) == 1:
            (client_id,) = allowed
        if client_id not in allowed:
            message = (
                "No User Assigned or Delegated Managed Identity found for specified "
                "ClientId/ResourceId/PrincipalId."
            )
            return JSONResponse({"statusCode": 400, "message": message}, 400)
        resource = request.query_params.get("resource", "")
        token = self._issue(client_id, _audience(resource), "managed_identity")
        return JSONResponse(
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + _TOKEN_SECONDS),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            }
        )


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status)


@dataclass
class _SecretVersion:
    value: str
    version: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))
    content_type: str | None = None


class KeyVaultFake:
    """One Key Vault (`https://<name>.vault.azure.net/`): secrets set, get (latest or a version),
    delete (soft delete, then get or purge the deleted secret).

    A request without a token gets the 401 bearer challenge naming the tenant and the vault
    audience, which the SDK answers with a token from Entra. `readers` and `writers` are the
    principals (client ids) allowed to read and to change secrets; anyone else gets 403.
    `reads` lists (principal, secret) for every secret read.
    """

    def __init__(
        self,
        name: str,
        entra: EntraFake,
        *,
        readers: Iterable[str] = (),
        writers: Iterable[str] = (),
    ):
        self.name = name
        self.entra = entra
        self.readers = set(readers)
        self.writers = set(writers)
        self.secrets: dict[str, list[_SecretVersion]] = {}
        self.deleted: dict[str, list[_SecretVersion]] = {}
        self.reads: list[tuple[str, str]] = []
        self.app = _app(
            [
                Route("/secrets/{name}", self._secret, methods=["GET", "PUT", "DELETE"]),
                # The SDK asks for the latest version as `/secrets/<name>/` (an empty version).
                Route("/secrets/{name}/", self._secret, methods=["GET"]),
                Route("/secrets/{name}/{version}", self._secret, methods=["GET"]),
                Route("/deletedsecrets/{name}", self._deleted, methods=["GET", "DELETE"]),
            ]
        )

    @property
    def host(self) -> str:
        return f"{self.name}.vault.azure.net"

    @property
    def url(self) -> str:
        return f"https://{self.host}/"

    def _authorize(self, request: Request, allowed: set[str]) -> str | Response:
        authorization = request.headers.get("authorization", "")
        if not authorization:
            challenge = (
                f'Bearer authorization="{self.entra.authority}", resource="{VAULT_AUDIENCE}"'
            )
            return _vault_error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                {"WWW-Authenticate": challenge},
            )
        principal = self.entra.principal(authorization, VAULT_AUDIENCE)
        if principal is None:
            return _vault_error(401, "Unauthorized", "AKV10022: Invalid audience or token.")
        if principal not in allowed:
            return _vault_error(
                403,
                "Forbidden",
                f"Caller is not authorized to perform action on resource. Caller: appid="
                f"{principal}. Vault: {self.name}.",
            )
        return principal

    def _bundle(self, name: str, secret: _SecretVersion, with_value: bool = True) -> dict:
        bundle: dict[str, Any] = {
            "id": f"{self.url}secrets/{name}/{secret.version}",
            "attributes": {
                "enabled": True,
                "created": secret.created,
                "updated": secret.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
        }
        if with_value:
            bundle["value"] = secret.value
        if secret.content_type:
            bundle["contentType"] = secret.content_type
        return bundle

    async def _secret(self, request: Request) -> Response:
        name = request.path_params["name"]
        reading = request.method == "GET"
        who = self._authorize(request, self.readers if reading else self.writers)
        if isinstance(who, Response):
            return who
        if request.method == "PUT":
            body = await request.json()
            secret = _SecretVersion(str(body["value"]), content_type=body.get("contentType"))
            self.secrets.setdefault(name, []).append(secret)
            self.deleted.pop(name, None)
            return JSONResponse(self._bundle(name, secret))
        versions = self.secrets.get(name)
        if not versions:
            return _secret_not_found(name, self.name)
        if request.method == "DELETE":
            self.deleted[name] = self.secrets.pop(name)
            return JSONResponse(self._deleted_bundle(name))
        wanted = request.path_params.get("version")
        found = [v for v in versions if v.version == wanted] if wanted else versions[-1:]
        if not found:
            return _secret_not_found(name, self.name)
        self.reads.append((who, name))
        return JSONResponse(self._bundle(name, found[0]))

    def _deleted_bundle(self, name: str) -> dict:
        latest = self.deleted[name][-1]
        now = int(time.time())
        return {
            **self._bundle(name, latest, with_value=False),
            "recoveryId": f"{self.url}deletedsecrets/{name}",
            "deletedDate": now,
            "scheduledPurgeDate": now + 90 * 86400,
        }

    async def _deleted(self, request: Request) -> Response:
        name = request.path_params["name"]
        who = self._authorize(request, self.writers)
        if isinstance(who, Response):
            return who
        if name not in self.deleted:
            return _vault_error(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        if request.method == "DELETE":
            del self.deleted[name]
            return Response(status_code=204)
        return JSONResponse(self._deleted_bundle(name))


def _vault_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def _secret_not_found(name: str, vault: str) -> JSONResponse:
    message = f"A secret with (name/id) {name} was not found in this key vault ({vault})."
    return _vault_error(404, "SecretNotFound", message)


# ARM -----------------------------------------------------------------------------------------
_RG = r"subscriptions/(?P<sub>[^/]+)/resource[gG]roups/(?P<rg>[^/]+)/providers"
_DEPLOYMENT = re.compile(_RG + r"/Microsoft\.Resources/deployments/(?P<name>[^/]+)", re.I)
_GROUP = re.compile(
    _RG + r"/Microsoft\.ContainerInstance/containerGroups/(?P<name>[^/]+)(?P<rest>/.*)?", re.I
)
_PARAMETER = re.compile(r"\[parameters\('(?P<name>[^']+)'\)\]")
# One ACI container group (standard Linux, no GPU) gets at most this much.
ACI_MAX_CPU = 4.0
ACI_MAX_MEMORY_GB = 16.0
_TERMINAL = ("Succeeded", "Failed", "Canceled")


class _ArmError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": self.code, "message": str(self)}}, status_code=self.status
        )


@dataclass
class ContainerGroup:
    """One ACI container group: the resource as deployed and its single container's run."""

    name: str
    resource_id: str
    resource: dict[str, Any]
    home: Path
    identity_client_ids: tuple[str, ...] = ()
    container: Container | None = None
    process: subprocess.Popen[bytes] | None = None
    provisioning_state: str = "Creating"
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    exit_code: int | None = None
    detail: str = ""
    _log_lines: list[str] = field(default_factory=list)

    @property
    def spec(self) -> dict[str, Any]:
        """The container's `properties` as deployed."""
        return self.resource["properties"]["containers"][0]["properties"]

    @property
    def log_path(self) -> Path:
        return self.home / "container.log"

    def current_state(self) -> dict[str, Any]:
        if self.finished_at is not None:
            return {
                "state": "Terminated",
                "startTime": _iso(self.started_at or self.finished_at),
                "finishTime": _iso(self.finished_at),
                "exitCode": self.exit_code,
                "detailStatus": self.detail,
            }
        if self.started_at is not None:
            return {"state": "Running", "startTime": _iso(self.started_at), "detailStatus": ""}
        return {"state": "Waiting", "detailStatus": "Pulling image"}

    def body(self) -> dict[str, Any]:
        properties = self.resource["properties"]
        spec = self.spec
        container = {
            "name": self.resource["properties"]["containers"][0]["name"],
            "properties": {
                "image": spec["image"],
                "command": spec.get("command", []),
                "resources": spec["resources"],
                # As ACI answers: secure values are never returned.
                "environmentVariables": [
                    {k: v for k, v in entry.items() if k != "secureValue"}
                    for entry in spec.get("environmentVariables", [])
                ],
                "instanceView": {"restartCount": 0, "currentState": self.current_state()},
            },
        }
        state = self.current_state()["state"]
        group_state = {"Terminated": "Succeeded" if self.exit_code == 0 else "Failed"}
        body: dict[str, Any] = {
            "id": self.resource_id,
            "name": self.name,
            "type": "Microsoft.ContainerInstance/containerGroups",
            "location": self.resource["location"],
            "properties": {
                "provisioningState": self.provisioning_state,
                "containers": [container],
                "osType": properties.get("osType", "Linux"),
                "restartPolicy": properties.get("restartPolicy", "Always"),
                "instanceView": {"state": group_state.get(state, "Running")},
            },
        }
        if "identity" in self.resource:
            body["identity"] = self.resource["identity"]
        if "imageRegistryCredentials" in properties:
            body["properties"]["imageRegistryCredentials"] = properties["imageRegistryCredentials"]
        return body

    def logs(self, tail: int | None) -> str:
        """The log lines so far, each with its own timestamp, in order, as ACI stamps them (to
        the nanosecond). The fake stamps a line when it first reads it, a microsecond apart:
        prefect-azure streams only the lines stamped after the last one it showed, so lines
        sharing a stamp would be dropped after the first."""
        if self.log_path.exists():
            lines = self.log_path.read_text(errors="replace").splitlines()
            now = _now()
            self._log_lines += [
                f"{_iso(now + datetime.timedelta(microseconds=i), 'microseconds')} {line}"
                for i, line in enumerate(lines[len(self._log_lines) :])
            ]
        shown = self._log_lines[-tail:] if tail else self._log_lines
        return "\n".join(shown)


@dataclass
class ArmDeployment:
    """One ARM template deployment: the template and parameters as sent, and its state."""

    name: str
    resource_id: str
    body: dict[str, Any]
    group: ContainerGroup
    created: datetime.datetime = field(default_factory=_now)

    def resource(self) -> dict[str, Any]:
        state = self.group.provisioning_state
        properties: dict[str, Any] = {
            "provisioningState": "Running" if state == "Creating" else state,
            "mode": self.body["properties"].get("mode", "Incremental"),
            "timestamp": _iso(self.created),
            "correlationId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.resource_id)),
            "parameters": self.body["properties"].get("parameters", {}),
            "outputResources": [{"id": self.group.resource_id}],
        }
        if state == "Failed":
            properties["error"] = {"code": "DeploymentFailed", "message": self.group.detail}
        return {
            "id": self.resource_id,
            "name": self.name,
            "type": "Microsoft.Resources/deployments",
            "properties": properties,
        }


class ArmFake:
    """Azure Resource Manager for a test subscription: template deployments of one container
    group (create or update as a long-running operation, get), and container groups (get with
    their instance view, delete, stop, a container's logs).

    A deployment starts the group's one container with `launcher` (tests/integration/
    containers.py): its image, `command`, `environmentVariables` and `cpu`/`memoryInGB`
    requests. The container also gets `container_env` (the test network: proxy and CA) and, when
    the group has user-assigned identities, `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` for the Entra
    fake's managed identity endpoint at `identity_endpoint`, which then issues tokens for those
    identities only. (Real ACI serves managed identities on IMDS, which loopback cannot hold.)

    `identities` maps each user-assigned identity's resource id to its client id; `registries`
    lists the login servers whose images a group may pull with a managed identity; `callers` the
    principals (client ids) allowed to call ARM, anyone else gets 403. Every request
    body is kept in `bodies`; every group deployed, deleted ones too, in `started`.
    """

    def __init__(
        self,
        workdir: Path,
        entra: EntraFake,
        *,
        launcher: Launcher,
        location: str,
        identities: Mapping[str, str],
        registries: Iterable[str] = (),
        callers: Iterable[str] = (),
        identity_endpoint: str = "",
        container_env: Mapping[str, str] | None = None,
        container_files: Iterable[Path] = (),
    ):
        self.workdir = Path(workdir)
        self.entra = entra
        self.launcher = launcher
        self.location = location
        self.identities = dict(identities)
        self.registries = set(registries)
        self.callers = set(callers)
        self.identity_endpoint = identity_endpoint
        self.container_env = dict(container_env or {})
        self.container_files = list(container_files)
        self.deployments: dict[str, ArmDeployment] = {}
        self.groups: dict[str, ContainerGroup] = {}
        self.started: list[ContainerGroup] = []
        self.deleted: list[str] = []
        self.bodies: list[str] = []
        self._lock = threading.Lock()
        self.app = _app(
            [Route("/{path:path}", self._api, methods=["GET", "PUT", "POST", "DELETE"])]
        )

    def group(self, name: str) -> ContainerGroup | None:
        """The group of that name, deleted ones too (the latest)."""
        found = [g for g in self.started if g.name == name]
        return found[-1] if found else None

    def kill(self, group: ContainerGroup) -> None:
        """SIGKILL the group's container, as an out-of-memory kill ends it (exit code 137)."""
        if group.container is not None and group.process is not None:
            self.launcher.kill(group.container, group.process)
            try:
                group.process.wait(30)
            except subprocess.TimeoutExpired:
                return

    def stop(self) -> None:
        """Kill every container still running (the ones this fake started)."""
        for group in self.started:
            self.kill(group)

    async def _api(self, request: Request) -> Response:
        body = await request.body()
        if body:
            self.bodies.append(body.decode(errors="replace"))
        principal = self.entra.principal(request.headers.get("authorization", ""), ARM_AUDIENCE)
        if principal is None:
            return _ArmError(
                401, "InvalidAuthenticationToken", "The access token is invalid."
            ).response()
        if principal not in self.callers:
            return _ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{principal}' does not have authorization to perform this action.",
            ).response()
        path = request.path_params["path"]
        try:
            with self._lock:
                status, payload = self._dispatch(request.method, path, request, body)
        except _ArmError as error:
            return error.response()
        # Polls come back soon: a long-running operation otherwise waits ARM's default 30 s.
        headers = {"Retry-After-Ms": "200"}
        if payload is None:
            return Response(status_code=status, headers=headers)
        return JSONResponse(payload, status, headers=headers)

    def _dispatch(
        self, method: str, path: str, request: Request, body: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        if m := _DEPLOYMENT.fullmatch(path):
            resource_id = "/" + path
            if method == "PUT":
                return 201, self._deploy(m["sub"], m["rg"], m["name"], resource_id, body)
            if method == "GET" and resource_id in self.deployments:
                return 200, self.deployments[resource_id].resource()
            raise _ArmError(404, "DeploymentNotFound", f"Deployment '{m['name']}' not found.")
        if m := _GROUP.fullmatch(path):
            group = self.groups.get(m["name"])
            if group is None:
                raise _ArmError(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.ContainerInstance/containerGroups/{m['name']}' "
                    f"under resource group '{m['rg']}' was not found.",
                )
            rest = m["rest"] or ""
            if method == "GET" and not rest:
                return 200, group.body()
            if method == "DELETE" and not rest:
                self.kill(group)
                del self.groups[group.name]
                self.deleted.append(group.name)
                return 200, group.body()
            if method == "POST" and rest == "/stop":
                self.kill(group)
                return 204, None
            if method == "GET" and re.fullmatch(r"/containers/[^/]+/logs", rest):
                tail = request.query_params.get("tail")
                return 200, {"content": group.logs(int(tail) if tail else None)}
        raise _ArmError(404, "NotFound", f"No route for {method} /{path} in this fake.")

    # --- deployments ---------------------------------------------------------------------------
    def _deploy(
        self, subscription: str, rg: str, name: str, resource_id: str, raw: bytes
    ) -> dict[str, Any]:
        body = json.loads(raw)
        template = body.get("properties", {}).get("template") or {}
        parameters = body.get("properties", {}).get("parameters") or {}
        resources = template.get("resources") or []
        groups = [
            r for r in resources if r.get("type") == "Microsoft.ContainerInstance/containerGroups"
        ]
        if len(resources) != 1 or len(groups) != 1:
            raise _ArmError(400, "InvalidTemplate", "This fake deploys one container group.")
        resolve = _Resolver(template.get("parameters") or {}, parameters, rg, self.location)
        resource = resolve(groups[0])
        group_name = str(resource["name"])
        if group_name in self.groups:
            raise _ArmError(409, "Conflict", f"Container group '{group_name}' exists already.")
        client_ids = self._validate(resource)
        home = self.workdir / group_name
        home.mkdir(parents=True, exist_ok=True)
        group_id = (
            f"/subscriptions/{subscription}/resourceGroups/{rg}/providers/"
            f"Microsoft.ContainerInstance/containerGroups/{group_name}"
        )
        group = ContainerGroup(group_name, group_id, resource, home, client_ids)
        self.groups[group_name] = group
        self.started.append(group)
        deployment = ArmDeployment(name, resource_id, body, group)
        self.deployments[resource_id] = deployment
        threading.Thread(target=self._run, args=(group,), daemon=True).start()
        return deployment.resource()

    def _validate(self, resource: dict[str, Any]) -> tuple[str, ...]:
        """What ARM checks before it deploys: one container, its image, the size within ACI's
        limit, and identities and registries the group may use. Returns the identities' client
        ids."""
        properties = resource.get("properties") or {}
        containers = properties.get("containers") or []
        if len(containers) != 1:
            raise _ArmError(400, "InvalidTemplate", "This fake runs exactly one container.")
        spec = containers[0].get("properties") or {}
        if not spec.get("image"):
            raise _ArmError(400, "InvalidContainerImage", "The container has no image.")
        requests = (spec.get("resources") or {}).get("requests") or {}
        cpu, memory = float(requests.get("cpu", 0)), float(requests.get("memoryInGB", 0))
        if not (0 < cpu <= ACI_MAX_CPU and 0 < memory <= ACI_MAX_MEMORY_GB):
            raise _ArmError(
                400,
                "InvalidContainerGroupResourceRequest",
                f"The requested resource (cpu {cpu:g}, memory {memory:g} GB) is not available "
                f"in location '{self.location}': at most {ACI_MAX_CPU:g} CPU and "
                f"{ACI_MAX_MEMORY_GB:g} GB per container group.",
            )
        assigned = list((resource.get("identity") or {}).get("userAssignedIdentities") or {})
        unknown = [i for i in assigned if i not in self.identities]
        if unknown:
            raise _ArmError(
                400, "InvalidUserAssignedIdentity", f"No such identity: {', '.join(unknown)}."
            )
        for credential in properties.get("imageRegistryCredentials") or []:
            if credential.get("server") not in self.registries:
                raise _ArmError(
                    400, "InaccessibleImage", f"Unknown registry {credential.get('server')}."
                )
            if credential.get("identity") not in assigned:
                raise _ArmError(
                    400,
                    "InvalidImageRegistryCredentialIdentity",
                    "The registry credential's identity is not assigned to the container group.",
                )
        return tuple(self.identities[i] for i in assigned)

    # --- the container -------------------------------------------------------------------------
    def _run(self, group: ContainerGroup) -> None:
        spec = group.spec
        env = dict(self.container_env)
        for entry in spec.get("environmentVariables") or []:
            value = entry.get("value", entry.get("secureValue"))
            if value is not None:
                env[entry["name"]] = str(value)
        if group.identity_client_ids:
            env["IDENTITY_ENDPOINT"] = self.identity_endpoint
            env["IDENTITY_HEADER"] = self.entra.grant_identities(group.identity_client_ids)
        requests = spec["resources"]["requests"]
        group.container = Container(
            name=f"aci-{group.name}",
            image=spec["image"],
            command=[str(part) for part in spec.get("command") or []],
            env=env,
            cpus=float(requests["cpu"]),
            memory_mib=int(float(requests["memoryInGB"]) * 1024),
            files=tuple(self.container_files),
        )
        try:
            group.process = self.launcher.start(group.container, group.log_path)
        except OSError as error:
            group.provisioning_state, group.detail = "Failed", f"The container failed: {error}"
            return
        group.started_at = _now()
        group.provisioning_state = "Succeeded"
        code = exit_code(group.process.wait())
        group.exit_code, group.detail = code, "Completed" if code == 0 else "Error"
        group.finished_at = _now()


class _Resolver:
    """The ARM template expressions prefect-azure's template uses: `[parameters('x')]`,
    `[resourceGroup().location]` and `[uniqueString(resourceGroup().id)]`."""

    def __init__(
        self, declared: dict[str, Any], given: dict[str, Any], rg: str, location: str
    ) -> None:
        self.declared, self.given = declared, given
        self.rg, self.location = rg, location

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self(item) for item in value]
        if not (isinstance(value, str) and value.startswith("[") and value.endswith("]")):
            return value
        if value == "[resourceGroup().location]":
            return self.location
        if value == "[uniqueString(resourceGroup().id)]":
            return uuid.uuid5(uuid.NAMESPACE_URL, self.rg).hex[:13]
        if m := _PARAMETER.fullmatch(value):
            return self._parameter(m["name"])
        raise _ArmError(400, "InvalidTemplate", f"This fake cannot evaluate {value}.")

    def _parameter(self, name: str) -> Any:
        if name in self.given:
            return self.given[name]["value"]
        if name in self.declared and "defaultValue" in self.declared[name]:
            return self(self.declared[name]["defaultValue"])
        raise _ArmError(400, "InvalidTemplate", f"The template parameter '{name}' is not set.")
