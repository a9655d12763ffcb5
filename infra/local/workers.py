"""The local stack's workers: one supervised process worker per process pool it serves."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

from deployments import recovery
from infra.local import prefect_setup
from infra.local.launcher import SOCKET_ENV

WORKER = "worker"
# The warm parent of the flow runs (infra/local/zygote.py), and its socket in the run directory.
ZYGOTE = "zygote"
ZYGOTE_SOCKET = "zygote.sock"
# Stopped in this order, workers first (they wait for their flow runs), the server last.
STOP_ORDER = (WORKER, ZYGOTE, "gateway", "sandbox", "server")
# A unix socket's path must fit in sockaddr_un (108 bytes with its NUL).
_MAX_SOCKET_PATH = 107


def process_name(pool: str, work_pool: str) -> str:
    """`worker` serves the stack's own pool (status, doctor and the tests know it by that
    name); `worker-<pool>` each other pool."""
    return WORKER if pool == work_pool else f"{WORKER}-{pool}"


def is_worker(name: str) -> bool:
    """Whether the stack's process `name` is one of its workers."""
    return name == WORKER or name.startswith(f"{WORKER}-")


def stop_order(names: Iterable[str]) -> list[str]:
    """`names` in the order `down` stops them: the workers, the gateway, the sandbox, the server,
    then anything else."""
    names = list(names)

    def rank(name: str) -> int:
        kind = WORKER if is_worker(name) else name
        return STOP_ORDER.index(kind) if kind in STOP_ORDER else len(STOP_ORDER)

    return sorted(names, key=lambda name: (rank(name), names.index(name)))


def command(pool: str) -> list[str]:
    """The supervised process worker of `pool`."""
    return [*prefect_setup.prefect_command(), "worker", "start", "--pool", pool,
            "--type", "process", "--name", prefect_setup.WORKER_NAME]  # fmt: skip


def zygote_command(socket: Path) -> list[str]:
    """The zygote that forks the warm flow runs, listening on `socket`."""
    return [sys.executable, "-m", "infra.local.zygote", "--socket", str(socket)]


def launcher_command() -> str:
    """The process pools' flow-run command: start from the zygote, else cold."""
    return shlex.join([sys.executable, "-m", "infra.local.launcher"])


def warm_socket(run_dir: Path, warm_start: bool) -> Path | None:
    """The zygote's socket, or None when flow runs start cold: turned off, or a run directory
    too deep for a unix socket's path."""
    socket = run_dir / ZYGOTE_SOCKET
    return socket if warm_start and len(str(socket)) <= _MAX_SOCKET_PATH else None


def settings_env(poll_seconds: float, socket: Path | None = None) -> dict[str, str]:
    """The Prefect settings of every worker of the stack (and of the flow runs it starts), and
    the zygote's socket when flow runs start warm."""
    return {
        **({SOCKET_ENV: str(socket)} if socket else {}),
        "PREFECT_WORKER_QUERY_SECONDS": str(poll_seconds),
        "PREFECT_WORKER_PREFETCH_SECONDS": str(max(2.0, 2 * poll_seconds)),
        # A short heartbeat lets `doctor` see a stopped worker within seconds.
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
        # Flow runs send heartbeats, so a run whose worker died with it is marked crashed.
        **recovery.heartbeat_env(),
    }
