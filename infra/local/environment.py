"""Which Prefect API and which Numerai a command talks to: the environment, else the local stack."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from prefect.settings import PREFECT_API_URL

from deployments.webhooks import prefect_api
from flows.settings import API_URL_ENV
from infra.local.stack import LocalStack, StackSettings


@contextlib.contextmanager
def local_stack_defaults() -> Iterator[LocalStack | None]:
    """Within the block, use the running local stack's Prefect API and sandbox when the user
    configured none. Settings the user made win. Yields the stack when one is up.
    """
    stack = LocalStack(StackSettings())
    if not stack.is_up():
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
