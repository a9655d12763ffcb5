"""Which Prefect API and which Numerai a command talks to: the environment, else the local stack."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

from deployments.webhooks import prefect_api
from flows.settings import API_URL_ENV
from infra.local.stack import LocalStack, StackSettings
from infra.local.state import StackError


class NoPrefectApi(StackError):
    """Neither PREFECT_API_URL nor a running local stack names a Prefect server."""

    def __init__(self) -> None:
        super().__init__(
            "No Prefect server to talk to: the local stack is not running and PREFECT_API_URL "
            "is not set. Start the stack (`numerai-nodes up --sandbox` to rehearse, "
            "`numerai-nodes up` for Numerai), or set PREFECT_API_URL (`prefect cloud login`, "
            "or `prefect config set PREFECT_API_URL=...`)."
        )


@contextlib.contextmanager
def local_stack_defaults(require_api: bool = False) -> Iterator[LocalStack | None]:
    """Within the block, use the running local stack's Prefect API and sandbox when the user
    configured none. Settings the user made win. Yields the stack when one is up.

    With neither, nothing starts a temporary Prefect server behind the user's back (it would
    only say that nothing is deployed there): `require_api` raises NoPrefectApi, and otherwise
    Prefect calls fail as "no API", which the checks report.
    """
    stack = LocalStack(StackSettings())
    if not stack.is_up():
        if PREFECT_API_URL.value():
            yield None
            return
        if require_api:
            raise NoPrefectApi()
        with temporary_settings({PREFECT_SERVER_EPHEMERAL_ENABLED: False}):
            yield None
        return
    if API_URL_ENV not in os.environ:
        for key, value in (stack.sandbox_keys() or {}).items():
            os.environ.setdefault(key, value)
    info = stack.info()
    if PREFECT_API_URL.value() or info is None:
        yield stack
        return
    with prefect_api(info.prefect_api_url):
        yield stack
