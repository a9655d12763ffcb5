"""`doctor`: check every link from Numerai's webhook to a submission, and say how to fix each."""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from deployments import recovery
from deployments.catalogue import Node
from deployments.checks import Check
from deployments.events import node_resource_id
from deployments.fleet import DECLARATIONS, read_fleet, resolve
from deployments.fleet_yaml import in_step
from deployments.tokens import load_token
from deployments.webhooks import gateway_url, is_prefect_cloud
from flows.errors import ConfigurationError, NodeError
from flows.keys import connect

_PACKAGES = ("prefect", "numerapi", "numerai-tools", "lightgbm", "pandas", "yfinance")
_WORKER_GRACE_SECONDS = 120


class PlaceChecks(Protocol):
    """What doctor asks of the places nodes run (infra/): how to set a pool up, and its checks."""

    def setup_command(self, pool_name: str) -> str | None:
        """The command that creates pool `pool_name`, when a place owns it."""
        ...

    def checks(self, pool_name: str, pool_type: str) -> list[Check]:
        """The place's own checks of a pool in use (credentials, stack, image, secrets)."""
        ...


def diagnose(
    nodes: list[Node],
    gateway_base: str | None,
    explicit: bool = False,
    places: PlaceChecks | None = None,
) -> list[Check]:
    """Run every check in order; later checks are skipped only when they cannot run at all.

    Unless `explicit`, only the nodes set up on this Prefect server (deployed, or with their work
    pool present) are checked: the catalogue also holds nodes for clouds a user may not use.
    `places` adds each place's checks of the pools in use (the CLI passes infra's).
    """
    checks = [_versions(), *_fleet()]
    api_url = PREFECT_API_URL.value()
    api_check, reachable = _prefect_api(api_url)
    checks.append(api_check)
    cloud = is_prefect_cloud(api_url)
    pool_types: dict[str, str] = {}
    if reachable:
        with get_client(sync_client=True) as client:
            if not explicit:
                nodes, idle = _in_use(client, nodes)
                checks += [_not_set_up(node, places) for node in idle]
            checks += _pools(client, nodes, pool_types)
            checks += _deployments(client, nodes)
            if nodes:
                checks.append(_recovery(client))
    checks += _numerai(nodes, gateway_base, cloud)
    if not cloud:
        checks.append(_gateway(gateway_base))
    if places is not None:
        for pool_name, pool_type in sorted(pool_types.items()):
            checks += places.checks(pool_name, pool_type)
    return checks


def _in_use(client: SyncPrefectClient, nodes: list[Node]) -> tuple[list[Node], list[Node]]:
    """Split `nodes` into those set up on this server and the rest."""
    in_use: list[Node] = []
    idle: list[Node] = []
    pools = {pool.name for pool in client.read_work_pools()}
    flows = {flow.id: flow.name for flow in client.read_flows()}
    deployed = {f"{flows.get(d.flow_id)}/{d.name}" for d in client.read_deployments()}
    for node in nodes:
        (in_use if node.work_pool in pools or node.full_name in deployed else idle).append(node)
    return in_use, idle


def _not_set_up(node: Node, places: PlaceChecks | None) -> Check:
    setup = places.setup_command(node.work_pool) if places is not None else None
    command = f"`{setup}`" if setup else f"`prefect work-pool create {node.work_pool}`"
    return Check(
        f"node {node.name}",
        "warn",
        f"not set up on this server (no work pool '{node.work_pool}', not deployed); not checked",
        f"To use it: {command}, then `{node.deploy_command}`.",
    )


def _versions() -> Check:
    found = []
    for package in _PACKAGES:
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} missing")
    detail = f"Python {platform.python_version()}; " + ", ".join(found)
    if sys.version_info < (3, 11) or any(item.endswith("missing") for item in found):
        return Check("versions", "fail", detail, "Run `uv sync` in the project directory.")
    return Check("versions", "ok", detail)


def _fleet() -> list[Check]:
    """nodes.yaml works, and prefect.yaml holds what it declares (none without nodes.yaml)."""
    if not DECLARATIONS.exists():
        return []
    try:
        nodes = resolve(read_fleet())
        current = in_step()
    except ConfigurationError as exc:
        return [
            Check("nodes.yaml", "fail", str(exc), "Fix nodes.yaml, then: numerai-nodes node sync")
        ]
    specs = {node.spec.name for node in nodes}
    detail = f"{len(nodes)} nodes over {len(specs)} specs"
    if not current:
        return [
            Check(
                "nodes.yaml",
                "warn",
                f"{detail}; prefect.yaml is out of step with it (edited by hand?)",
                "numerai-nodes node sync",
            )
        ]
    return [Check("nodes.yaml", "ok", f"{detail}, in step with prefect.yaml")]


def _prefect_api(api_url: str | None) -> tuple[Check, bool]:
    if not api_url:
        return (
            Check(
                "prefect api",
                "fail",
                "no Prefect server: the local stack is not running and PREFECT_API_URL is not set",
                "Start the local stack (`numerai-nodes up`) or set PREFECT_API_URL "
                "(`prefect cloud login` for Prefect Cloud).",
            ),
            False,
        )
    kind = "Prefect Cloud" if is_prefect_cloud(api_url) else "self-hosted Prefect server"
    try:
        with get_client(sync_client=True) as client:
            client.api_healthcheck()
            problem = client.api_healthcheck()
    except Exception as exc:  # any failure to reach the API is the diagnosis itself
        problem = exc
    if problem is not None:
        return (
            Check(
                "prefect api",
                "fail",
                f"{kind} at {api_url} is unreachable ({type(problem).__name__}).",
                "Start it (`numerai-nodes up`), or fix PREFECT_API_URL.",
            ),
            False,
        )
    return Check("prefect api", "ok", f"{kind} at {api_url}"), True


def _pools(client: SyncPrefectClient, nodes: list[Node], pool_types: dict[str, str]) -> list[Check]:
    """One check per work pool the nodes name; records each pool's type in `pool_types`."""
    checks = []
    for pool_name in sorted({node.work_pool for node in nodes}):
        name = f"work pool {pool_name}"
        try:
            pool = client.read_work_pool(pool_name)
        except ObjectNotFound:
            checks.append(
                Check(
                    name,
                    "fail",
                    "does not exist",
                    f"Create it: `prefect work-pool create {pool_name} --type process` "
                    "(or `numerai-nodes up` locally, `numerai-nodes infra ... up` on a cloud).",
                )
            )
            continue
        pool_types[pool_name] = pool.type
        if pool.type.endswith(":push"):
            checks.append(Check(name, "ok", f"{pool.type} push pool: needs no worker"))
            continue
        workers = client.read_workers_for_work_pool(pool_name)
        online = [w for w in workers if _alive(w)]
        if online:
            names = ", ".join(w.name for w in online)
            checks.append(Check(name, "ok", f"{pool.type} pool with live worker(s): {names}"))
        else:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{pool.type} pool has no live worker, so flow runs stay Scheduled",
                    f"Start one: `prefect worker start --pool {pool_name}` "
                    "(or `numerai-nodes up` for the local stack).",
                )
            )
    return checks


def live_workers(pool_name: str) -> list[str]:
    """The names of pool `pool_name`'s live workers (by their heartbeats); a place's doctor
    checks a worker it hosts with this."""
    with get_client(sync_client=True) as client:
        return [w.name for w in client.read_workers_for_work_pool(pool_name) if _alive(w)]


def _alive(worker) -> bool:
    """Online, with a heartbeat younger than two intervals (the server waits for three)."""
    if str(worker.status.value).upper() != "ONLINE" or worker.last_heartbeat_time is None:
        return False
    interval = worker.heartbeat_interval_seconds or 30
    age = (datetime.now(UTC) - worker.last_heartbeat_time).total_seconds()
    return age < max(2 * interval, 10)


def _deployments(client: SyncPrefectClient, nodes: list[Node]) -> list[Check]:
    checks = []
    automations = client.read_automations()
    for node in nodes:
        name = f"node {node.name}"
        try:
            deployment = client.read_deployment_by_name(node.full_name)
        except ObjectNotFound:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{node.full_name} is not deployed",
                    f"Deploy it: `{node.deploy_command}`.",
                )
            )
            continue
        if _has_trigger(automations, node, deployment.id):
            checks.append(
                Check(name, "ok", f"deployed with its webhook trigger ({node.full_name})")
            )
        else:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{node.full_name} is deployed but no automation runs it on "
                    f"{node_resource_id(node.name)} events",
                    "Give the deployment its `triggers:` entry in prefect.yaml, then deploy again.",
                )
            )
    return checks


def _recovery(client: SyncPrefectClient) -> Check:
    enabled = {automation.name for automation in client.read_automations() if automation.enabled}
    missing = [name for name in recovery.AUTOMATIONS if name not in enabled]
    if missing:
        return Check(
            "crash recovery",
            "warn",
            f"missing or disabled: {'; '.join(missing)}. A crashed node run stays crashed",
            "Run `numerai-nodes recovery apply`.",
        )
    return Check("crash recovery", "ok", "crashed and silent node runs are run again")


def _has_trigger(automations, node: Node, deployment_id) -> bool:
    resource = node_resource_id(node.name)
    for automation in automations:
        if not automation.enabled:
            continue
        match = getattr(automation.trigger, "match", None)
        ids = getattr(match, "root", {}).get("prefect.resource.id") if match else None
        matched = ids == resource or (isinstance(ids, list) and resource in ids)
        runs_it = any(
            getattr(action, "deployment_id", None) == deployment_id for action in automation.actions
        )
        if matched and runs_it:
            return True
    return False


def _numerai(nodes: list[Node], gateway_base: str | None, cloud: bool) -> list[Check]:
    checks = []
    for tournament in sorted({node.tournament for node in nodes}):
        client = connect(tournament)
        if not client.has_keys:
            checks.append(
                Check(
                    f"numerai keys (tournament {tournament})",
                    "fail",
                    "no Numerai API keys found",
                    "Set NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY, or the Prefect Secret blocks "
                    "numerai-public-id and numerai-secret-key.",
                )
            )
            continue
        try:
            models = client.models()
        except NodeError as exc:
            checks.append(Check(f"numerai keys (tournament {tournament})", "fail", str(exc)))
            continue
        checks.append(
            Check(f"numerai keys (tournament {tournament})", "ok", f"valid at {client.url}")
        )
        try:
            webhooks = client.registered_webhooks()
        except NodeError:
            webhooks = None
        for node in (n for n in nodes if n.tournament == tournament):
            checks.append(_model_and_webhook(node, models, webhooks, gateway_base, cloud))
    return checks


def _model_and_webhook(node, models, webhooks, gateway_base, cloud) -> Check:
    name = f"numerai model of {node.name}"
    if node.numerai_model not in models:
        known = ", ".join(sorted(models)) or "none"
        return Check(
            name,
            "fail",
            f"no model '{node.numerai_model}' on the account (models: {known})",
            "Fix `numerai_model` of the node in prefect.yaml, or create the model on numer.ai.",
        )
    if webhooks is None:
        return Check(
            name,
            "warn",
            f"'{node.numerai_model}' exists; its registered webhook cannot be read here",
            f"Re-register it to be sure: `numerai-nodes webhook register {node.name}`.",
        )
    registered = webhooks.get(node.numerai_model)
    expected = _expected_webhook(node, gateway_base, cloud)
    fix = f"Register it: `numerai-nodes webhook register {node.name}`."
    if not registered:
        return Check(name, "fail", f"'{node.numerai_model}' has no webhook on Numerai", fix)
    if expected is not None and registered != expected:
        return Check(
            name, "fail", f"'{node.numerai_model}' calls another URL than this node's", fix
        )
    return Check(name, "ok", f"'{node.numerai_model}' exists and calls this node's webhook")


def _expected_webhook(node: Node, gateway_base: str | None, cloud: bool) -> str | None:
    if cloud or not gateway_base:
        return None

    token = load_token(node.name)
    return gateway_url(gateway_base, node.name, token.get_secret_value()) if token else None


def _gateway(gateway_base: str | None) -> Check:
    if not gateway_base:
        return Check(
            "gateway",
            "fail",
            "no gateway URL known (self-hosted Prefect needs the gateway for webhooks)",
            "Start the local stack (`numerai-nodes up`) or set NUMERAI_NODES_GATEWAY_PUBLIC_URL.",
        )
    url = gateway_base.rstrip("/") + "/healthz"
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return Check(
            "gateway",
            "fail",
            f"{gateway_base} is unreachable ({type(exc).__name__})",
            "Start it: `python -m deployments.gateway` (or `numerai-nodes up`).",
        )
    if response.status_code != 200:
        return Check(
            "gateway",
            "fail",
            f"{gateway_base} answers {response.status_code}: {response.text[:160]}",
            "The gateway cannot reach Prefect (check its PREFECT_API_URL), or its outbox or "
            "delivery loop is down (see its log): webhooks it accepts wait in its outbox.",
        )
    return Check("gateway", "ok", f"{gateway_base} is up and reaches Prefect")
