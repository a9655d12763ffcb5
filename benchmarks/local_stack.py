"""The local stack the round-day benchmarks measure: free ports, a scratch home, tiny data."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from infra.local.stack import LocalStack, StackSettings
from infra.local.state import StackInfo
from tests.integration.servers import free_port


@contextlib.contextmanager
def running_stack(
    project: Path,
    home: Path,
    indent: str = "",
    warm_start: bool = True,
    database_url: str | None = None,
) -> Iterator[StackInfo]:
    """The local stack with the sandbox, up for the block and down after it; `warm_start`
    (NUMERAI_NODES_WARM_START) starts its flow runs from the zygote; `database_url` puts
    Prefect on that PostgreSQL instead of SQLite."""
    settings = StackSettings(
        home=home,
        prefect_port=free_port(),
        gateway_port=free_port(),
        sandbox_port=free_port(),
        warm_start=warm_start,
        database_url=database_url,
        _env_file=None,
    )
    os.environ["PREFECT_UI_ENABLED"] = "false"
    stack = LocalStack(settings, project_dir=project)
    started = time.perf_counter()
    info = stack.up(sandbox=True, sandbox_size="tiny")
    print(f"{indent}stack up in {time.perf_counter() - started:.0f} s", flush=True)
    try:
        yield info
    finally:
        stack.down()
