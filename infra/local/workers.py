"""The local stack's workers: one supervised process worker per process pool it serves."""

from __future__ import annotations

from collections.abc import Iterable

from deployments import recovery
from infra.local import prefect_setup

WORKER = "worker"
# Stopped in this order, workers first (they wait for their flow runs), the server last.
STOP_ORDER = (WORKER, "gateway", "sandbox", "server")


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


def settings_env(poll_seconds: float) -> dict[str, str]:
    """The Prefect settings of every worker of the stack (and of the flow runs it starts)."""
    return {
        "PREFECT_WORKER_QUERY_SECONDS": str(poll_seconds),
        "PREFECT_WORKER_PREFETCH_SECONDS": str(max(2.0, 2 * poll_seconds)),
        # A short heartbeat lets `doctor` see a stopped worker within seconds.
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
        # Flow runs send heartbeats, so a run whose worker died with it is marked crashed.
        **recovery.heartbeat_env(),
    }
