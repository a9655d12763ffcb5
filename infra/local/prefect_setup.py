"""What the local stack sets up on its own Prefect server: the work pools, the deployments."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import httpx
from prefect.client.orchestration import SyncPrefectClient
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from deployments import recovery
from deployments.webhooks import prefect_api
from infra.local.processes import tail
from infra.local.state import StackError
from infra.pools import set_default, upsert_pool

WORKER_NAME = "numerai-nodes-local"
_LOG_TAIL_LINES = 20

# Prefect's server writes each task-run event in a transaction of its own, and other events in
# twenties every 5 s. A round of ten nodes sends hundreds within seconds (a run's 12 tasks make
# 36): batched, the server spends about a quarter less CPU per run (benchmarks/round_day.py),
# and a task's state reaches the API and the UI at most RECORDING_LAG_SECONDS after its event.
# Each is Prefect's own setting: one set in the environment wins.
RECORDING_LAG_SECONDS = 1
_RECORDING_BATCHES = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": str(RECORDING_LAG_SECONDS),
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": str(RECORDING_LAG_SECONDS),
}


def recording_batches(environ: Mapping[str, str]) -> dict[str, str]:
    """The server's settings for recording events in batches, `environ`'s where it has them."""
    return {key: environ.get(key, value) for key, value in _RECORDING_BATCHES.items()}


class Deployable(Protocol):
    """A deployment of prefect.yaml: a node, or a training."""

    @property
    def full_name(self) -> str: ...


def prefect_command() -> list[str]:
    """`prefect` as this interpreter runs it."""
    return [sys.executable, "-m", "prefect"]


def create_process_pool(api_url: str, name: str, command: str | None = None) -> None:
    """Create (or refresh) the `process` work pool `name` from Prefect's own default template;
    `command` (the warm launcher) becomes its flow runs' default command."""
    template = copy.deepcopy(ProcessWorker.get_default_base_job_template())
    if command is not None:
        set_default(template, "command", command)
    with prefect_api(api_url):
        upsert_pool(name, "process", template)


def worker_online(api_url: str, pool: str, since: datetime) -> bool:
    """Whether the stack's worker has sent a heartbeat for `pool` since `since`."""
    try:
        with SyncPrefectClient(api_url) as client:
            workers = client.read_workers_for_work_pool(pool)
    except (httpx.HTTPError, ObjectNotFound):  # the server or the pool is not ready yet
        return False
    return any(
        worker.name == WORKER_NAME
        and worker.last_heartbeat_time is not None
        and worker.last_heartbeat_time >= since
        for worker in workers
    )


def start_deploy(
    names: Sequence[str], project_dir: Path, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start `prefect deploy --name NAME...` in the project directory (it runs while others
    start)."""
    selected = [argument for name in names for argument in ("--name", name)]
    with log.open("wb") as handle:
        return subprocess.Popen(
            [*prefect_command(), "--no-prompt", "deploy", *selected],
            cwd=project_dir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def finish_deploy(deploy: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    """Wait for `prefect deploy`; a failure names its exit code and the end of its output."""
    try:
        code = deploy.wait(timeout)
    except subprocess.TimeoutExpired:
        raise StackError(f"prefect deploy did not finish in {timeout:.0f} s; see {log}") from None
    if code != 0:
        raise StackError(
            f"prefect deploy failed (exit code {code}). The end of its output "
            f"({log}):\n{tail(log, _LOG_TAIL_LINES)}"
        )


def apply_recovery(api_url: str) -> list[str]:
    """Create (or refresh) the automations that run crashed and silent node runs again."""
    with prefect_api(api_url):
        return recovery.apply()


def pause_schedules(api_url: str, deployments: Sequence[Deployable]) -> list[str]:
    """Turn the deployments' schedules off (nodes' fallback runs, trainings' daily runs);
    returns those that had one on.

    A sandbox rehearsal opens rounds on its own clock, not Numerai's: a fallback run at Numerai's
    hour would only add a submission the rehearsal did not ask for, and a training at 06:00 UTC
    a training it did not ask for. Turning a schedule off also deletes the runs Prefect had
    already scheduled for it.
    """
    paused = []
    with SyncPrefectClient(api_url) as client:
        for each in deployments:
            deployment = client.read_deployment_by_name(each.full_name)
            for schedule in deployment.schedules:
                if schedule.active:
                    client.update_deployment_schedule(deployment.id, schedule.id, active=False)
                    paused.append(each.full_name)
    return sorted(set(paused))
