"""Work pools a cloud stack owns: the worker's default job template, filled in and applied."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.schemas.actions import (
    VariableCreate,
    VariableUpdate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from prefect.exceptions import ObjectNotFound
from prefect.plugins import load_prefect_collections
from prefect.settings import PREFECT_API_URL
from prefect.workers.base import BaseWorker

from deployments.checks import Check
from deployments.webhooks import is_prefect_cloud
from flows.errors import NodeError


class PrefectApiUnreachable(NodeError, ConnectionError):
    """The Prefect API that would hold the work pool does not answer."""


class WorkerNotInstalled(NodeError, LookupError):
    """No installed Prefect worker serves the work pool type."""


class PoolTypeConflict(NodeError, ValueError):
    """A work pool of that name exists with another type."""


# The Prefect setting that routes every task result, the trained model among them, to a block.
RESULT_STORAGE_ENV = "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"


def require_prefect_api() -> str:
    """The Prefect API URL, once it answers; checked before a stack is built for its pool."""
    url = PREFECT_API_URL.value()
    if not url:
        raise PrefectApiUnreachable(
            "No Prefect API is set: the work pool needs one. Log in to Prefect Cloud "
            "(`prefect cloud login`) or set PREFECT_API_URL to your server's API."
        )
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise PrefectApiUnreachable(
            f"The Prefect API at {url} does not answer ({type(problem).__name__}), so the work "
            "pool cannot be created. Start the server or fix PREFECT_API_URL, then run this again."
        )
    return url


def default_template(pool_type: str) -> dict[str, Any]:
    """The base job template the worker for `pool_type` ships with (a fresh copy)."""
    load_prefect_collections()
    worker = BaseWorker.get_worker_class_from_type(pool_type)
    if worker is None:
        raise WorkerNotInstalled(
            f"No worker for work pool type '{pool_type}' is installed. "
            "Install the project with `uv sync` (it brings prefect-aws and prefect-gcp)."
        )
    return copy.deepcopy(worker.get_default_base_job_template())


def set_default(template: dict[str, Any], variable: str, value: Any) -> None:
    """Set one job variable's default; a deployment's job_variables can still override it."""
    properties = template["variables"]["properties"]
    if variable not in properties:
        raise KeyError(f"the job template has no variable '{variable}'")
    properties[variable]["default"] = value


def upsert_pool(name: str, pool_type: str, template: dict[str, Any]) -> bool:
    """Create pool `name` with `template`, or update its template; True when it was created."""
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(name=name, type=pool_type, base_job_template=template)
            )
            return True
        if existing.type != pool_type:
            raise PoolTypeConflict(
                f"Work pool '{name}' exists with type '{existing.type}', not '{pool_type}'. "
                f"Delete it (`prefect work-pool delete {name}`) or choose another pool name."
            )
        client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
        return False


def read_pool_template(name: str) -> dict[str, Any] | None:
    """Pool `name`'s base job template, or None when the pool does not exist."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_work_pool(name).base_job_template
        except ObjectNotFound:
            return None


def read_pool_type(name: str) -> str | None:
    """Pool `name`'s type (`ecs`, `ecs:push`, ...), or None when the pool does not exist."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_work_pool(name).type
        except ObjectNotFound:
            return None


def delete_pool(name: str, pool_type: str) -> bool:
    """Delete pool `name` if it has type `pool_type` (another place's pool stays); True if done."""
    with get_client(sync_client=True) as client:
        try:
            if client.read_work_pool(name).type != pool_type:
                return False
            client.delete_work_pool(name)
        except ObjectNotFound:
            return False
    return True


def delete_block(name: str, block_type: str) -> bool:
    """Delete the block document `block_type/name`; True when it existed."""
    with get_client(sync_client=True) as client:
        try:
            block = client.read_block_document_by_name(name, block_type)
            client.delete_block_document(block.id)
        except ObjectNotFound:
            return False
    return True


def set_variable(name: str, value: str) -> None:
    """Create or update Prefect variable `name`; prefect.yaml reads it as
    `{{ prefect.variables.<name> }}` (the image a cloud node's build step tags)."""
    with get_client(sync_client=True) as client:
        if client.read_variable_by_name(name) is None:
            client.create_variable(VariableCreate(name=name, value=value))
        else:
            client.update_variable(VariableUpdate(name=name, value=value))


# --- Prefect Cloud push pools ----------------------------------------------------------------
# A place opts in with one PushPool row (AWS: `ecs`, GCP: `cloud-run-v2`) and calls its methods
# from `up` and doctor; everything below is the same on every place.


class PushNeedsPrefectCloud(NodeError, ValueError):
    """A push work pool was asked for on a Prefect API that is not Prefect Cloud."""


class PushCredentialsMissing(NodeError, LookupError):
    """A push work pool needs a credentials block, and none was given or saved."""


def on_prefect_cloud(api_url: str | None = None) -> bool:
    """Whether `api_url` (default: the API in use) is Prefect Cloud, where push pools run."""
    return is_prefect_cloud(api_url if api_url is not None else PREFECT_API_URL.value())


def block_reference(block_document_id: str) -> dict[str, Any]:
    """A job variable default that points at a block document (the only way a pool can)."""
    return {"$ref": {"block_document_id": block_document_id}}


def referenced_block_id(template: dict[str, Any], variable: str) -> str | None:
    """The block document id that `variable`'s default references, or None."""
    default = template.get("variables", {}).get("properties", {}).get(variable, {}).get("default")
    if isinstance(default, dict) and isinstance(default.get("$ref"), dict):
        found = default["$ref"].get("block_document_id")
        return str(found) if found else None
    return None


def save_block(block: Any, name: str) -> str:
    """Save `block` (a Prefect Block) as `name`, overwriting; its document id."""
    return str(block.save(name, overwrite=True))


def block_id_by_name(name: str, block_type: str) -> str | None:
    """The id of block document `block_type/name`, or None when it does not exist."""
    with get_client(sync_client=True) as client:
        try:
            return str(client.read_block_document_by_name(name, block_type).id)
        except ObjectNotFound:
            return None


@dataclass(frozen=True)
class PushPool:
    """A place's Prefect Cloud push pool: the hybrid type it mirrors, and the credentials block
    Prefect Cloud starts flow runs with.

    A push pool has the hybrid pool's job template (so prefect.yaml's nodes run on it unchanged,
    under the same pool name) plus one job variable, `credentials_variable`, whose default
    references a `block_type` block holding a cloud identity that may only start flow runs.
    The rule every place follows: `up` makes a hybrid pool unless `--push` is given; without the
    flag it keeps the kind the stack recorded; on Prefect Cloud it says how to choose push.
    A third place needs one row, e.g.
    `PushPool("azure-container-instance", "aci_credentials", "azure-container-instance-credentials",
    "numerai-nodes infra azure up", "<how to give the credentials>")`.
    """

    hybrid_type: str
    credentials_variable: str
    block_type: str
    up_command: str
    credentials_how: str  # how the user gives the credentials, for messages

    @property
    def type(self) -> str:
        """The push pool type (`ecs:push`)."""
        return f"{self.hybrid_type}:push"

    def choose(self, requested: bool | None, recorded: bool, api_url: str | None = None) -> bool:
        """Whether `up` makes the push pool: `requested` (--push / --no-push) when given, else
        what the stack recorded (a new stack: hybrid). Push off Prefect Cloud is refused."""
        push = recorded if requested is None else requested
        url = api_url if api_url is not None else PREFECT_API_URL.value()
        if push and not on_prefect_cloud(url):
            how = "`--no-push`" if requested is None else "no `--push`"
            raise PushNeedsPrefectCloud(
                f"A push work pool ({self.type}) runs only on Prefect Cloud, and the Prefect API "
                f"is {url}. Log in to Prefect Cloud (`prefect cloud login`) or run "
                f"`{self.up_command}` with {how} for a pool served by a worker."
            )
        return push

    def remove(self, pool_name: str, block_name: str) -> list[str]:
        """`down`'s part for the push kind: the pool if it is a push pool, and the credentials
        block; one line per thing deleted."""
        done = []
        if delete_pool(pool_name, self.type):
            done.append(f"deleted work pool {pool_name}")
        if delete_block(block_name, self.block_type):
            done.append(f"deleted block {self.block_type}/{block_name}")
        return done

    def hint(self, pool_name: str, push: bool, api_url: str | None = None) -> str | None:
        """On Prefect Cloud with a hybrid pool: the line saying a push pool is available."""
        if push or not on_prefect_cloud(api_url):
            return None
        return (
            f"On Prefect Cloud a push pool ({self.type}) needs no worker: Prefect Cloud starts "
            f"each flow run itself. To switch, delete this pool (`prefect work-pool delete "
            f"{pool_name}`) and run `{self.up_command} --push` ({self.credentials_how})."
        )

    def require_type(self, pool_name: str, push: bool) -> None:
        """Before building anything: pool `pool_name`, if it exists, has the type `up` will give."""
        wanted = self.type if push else self.hybrid_type
        with get_client(sync_client=True) as client:
            try:
                existing = client.read_work_pool(pool_name).type
            except ObjectNotFound:
                return
        if existing != wanted:
            raise PoolTypeConflict(
                f"Work pool '{pool_name}' is a {existing} pool, not {wanted}. A pool's type cannot "
                f"change: delete it (`prefect work-pool delete {pool_name}`), run "
                f"`{self.up_command}{' --push' if push else ' --no-push'}` again, then deploy "
                "the nodes again (`prefect deploy`), or pass --pool with another name."
            )

    def reference(self, template: dict[str, Any], block_document_id: str) -> dict[str, Any]:
        """`template` with the credentials variable defaulting to the block (in place)."""
        set_default(template, self.credentials_variable, block_reference(block_document_id))
        return template

    def credentials_missing(self, block_name: str) -> PushCredentialsMissing:
        """The error `up --push` raises when no credentials were given and no block exists."""
        return PushCredentialsMissing(
            f"The {self.type} pool needs the {self.block_type} block '{block_name}', and no "
            f"credentials were given to create it: {self.credentials_how}, then run "
            f"`{self.up_command} --push` again."
        )

    def checks(
        self,
        pool_name: str,
        pool_type: str | None,
        template: dict[str, Any] | None,
        recorded: bool,
        api_url: str | None = None,
    ) -> list[Check]:
        """Doctor's checks of the pool's kind against what the stack recorded, and of a push
        pool's credentials block; each failure names its fix."""
        if pool_type is None or template is None:
            return []
        name = f"{self.hybrid_type} pool kind"
        push = pool_type == self.type
        if recorded and not push:
            return [
                Check(
                    name,
                    "fail",
                    f"work pool {pool_name} is a {pool_type} pool, but the stack was set up "
                    "with --push",
                    f"Delete it (`prefect work-pool delete {pool_name}`) and run "
                    f"`{self.up_command} --push`; or run `{self.up_command} --no-push` and "
                    f"start a worker (`prefect worker start --pool {pool_name}`).",
                )
            ]
        if push and not recorded:
            return [
                Check(
                    name,
                    "fail",
                    f"work pool {pool_name} is a {pool_type} pool, but the stack was set up "
                    "for a hybrid pool (without --push)",
                    f"Run `{self.up_command} --push` to set the stack up for it.",
                )
            ]
        if not push:
            return []
        if not on_prefect_cloud(api_url):
            return [
                Check(
                    name,
                    "fail",
                    f"work pool {pool_name} is a {pool_type} pool, which only Prefect Cloud runs",
                    "Point PREFECT_API_URL at Prefect Cloud (`prefect cloud login`), or delete "
                    f"the pool and run `{self.up_command} --no-push`.",
                )
            ]
        return [Check(name, "ok", f"{pool_type} pool"), self._credentials(pool_name, template)]

    def _credentials(self, pool_name: str, template: dict[str, Any]) -> Check:
        name = f"{self.hybrid_type} push credentials"
        fix = f"Give the credentials ({self.credentials_how}) and run `{self.up_command} --push`."
        block_id = referenced_block_id(template, self.credentials_variable)
        if block_id is None:
            return Check(
                name,
                "fail",
                f"work pool {pool_name}'s `{self.credentials_variable}` references no "
                f"{self.block_type} block, so Prefect Cloud cannot start its flow runs",
                fix,
            )
        with get_client(sync_client=True) as client:
            try:
                document = client.read_block_document(UUID(block_id))
            except (ObjectNotFound, ValueError):
                return Check(
                    name,
                    "fail",
                    f"the {self.block_type} block that work pool {pool_name} references "
                    f"({block_id}) does not exist",
                    fix,
                )
        slug = document.block_type.slug if document.block_type else None
        if slug != self.block_type:
            return Check(
                name,
                "fail",
                f"work pool {pool_name}'s `{self.credentials_variable}` references a {slug} "
                f"block ({document.name}), not a {self.block_type} block",
                fix,
            )
        return Check(name, "ok", f"Prefect Cloud starts flow runs with {slug}/{document.name}")


def pool_checks(
    pool_name: str,
    outputs: Mapping[str, str],
    push: PushPool,
    mismatches: Callable[[dict[str, Any]], list[str]],
    stack_error: type[Exception],
) -> list[Check]:
    """Doctor's checks of a Terraform place's pool: its job template against the stack's
    outputs (`mismatches` lists what differs; `stack_error` is the place's error for outputs
    that cannot be compared), then its kind against the stack's recorded `push_pool`."""
    name = f"Work pool {pool_name}"
    fix = f"Create or update the pool from the stack with `{push.up_command}`."
    try:
        actual = read_pool_template(pool_name)
    except (httpx.HTTPError, RuntimeError) as exc:  # the main doctor checks the Prefect API
        return [Check(name, "warn", f"could not read the pool ({type(exc).__name__})", fix)]
    if actual is None:
        return [Check(name, "fail", "the pool does not exist", fix)]
    try:
        differ = mismatches(actual)
    except stack_error as exc:
        template = Check(name, "fail", str(exc), fix)
    else:
        image = actual.get("variables", {}).get("properties", {}).get("image", {}).get("default")
        template = (
            Check(name, "fail", "defaults differ from the stack: " + "; ".join(differ), fix)
            if differ
            else Check(name, "ok", f"matches the stack (image {image})")
        )
    try:
        pool_type = read_pool_type(pool_name)
    except (httpx.HTTPError, RuntimeError):
        return [template]
    recorded = outputs.get("push_pool") == "true"
    return [template, *push.checks(pool_name, pool_type, actual, recorded)]
