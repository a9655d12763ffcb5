"""Work pools a cloud stack owns: the worker's default job template, filled in and applied."""

from __future__ import annotations

import copy
from typing import Any

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
