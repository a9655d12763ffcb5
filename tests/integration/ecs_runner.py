"""A test stand-in for Fargate: run each ECS task moto holds as a container, report its end.

moto records `run_task` but runs nothing. `EcsTaskRunner` polls the cluster for RUNNING tasks,
builds the container's environment the way the ECS agent does (task-definition environment, then
the run's overrides, then `secrets` resolved from Secrets Manager), starts the task's image with
its command, CPU and memory (`tests/integration/containers.py`: podman, or a local process where
containers cannot run), stops the task in moto and posts the "ECS Task State Change" event that
EventBridge would put on the Prefect worker's SQS queue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.integration.containers import Container, Launcher, exit_code
from tests.integration.servers import free_port


@dataclass
class _Running:
    task: dict
    name: str  # the task definition's container name, which the state events carry
    container: Container
    process: subprocess.Popen[bytes]
    flow_run_id: str | None
    log_path: Path
    env_names: list[str]


@dataclass
class TaskRecord:
    """One finished task: its ARN, flow run, exit code, environment names and log."""

    task_arn: str
    flow_run_id: str | None
    exit_code: int
    env_names: list[str]
    log_path: Path


class EcsTaskRunner:
    """Run moto's ECS tasks with `launcher`, in a daemon thread; use as a context manager.

    `role_env` is what the task role provides (the AWS endpoint and credentials); container logs
    go under `logs`. `kill_when_running(flow_run_id)` makes the runner SIGKILL that run's container
    once Prefect reports it RUNNING, as an out-of-memory kill would.
    """

    def __init__(
        self,
        *,
        cluster: str,
        queue_url: str,
        launcher: Launcher,
        logs: Path,
        role_env: Mapping[str, str],
        prefect_api_url: str,
        poll_seconds: float = 0.5,
    ):
        self.cluster = cluster
        self.queue_url = queue_url
        self.launcher = launcher
        self.logs = logs
        self.role_env = dict(role_env)
        self.prefect_api_url = prefect_api_url.rstrip("/")
        self.poll_seconds = poll_seconds
        self.finished: list[TaskRecord] = []
        self._kill: set[str] = set()
        self._seen: set[str] = set()
        self._running: list[_Running] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._errors: list[BaseException] = []

    def __enter__(self) -> EcsTaskRunner:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for running in self._running:
            if running.process.poll() is None:
                self.launcher.kill(running.container, running.process)
                running.process.wait(30)

    def kill_when_running(self, flow_run_id: str) -> None:
        self._kill.add(str(flow_run_id))

    def check(self) -> None:
        """Raise what went wrong in the runner's thread, if anything."""
        if self._errors:
            raise RuntimeError("the ECS task runner failed") from self._errors[0]

    def _client(self, service: str):
        return boto3.client(service)

    def _loop(self) -> None:
        try:
            ecs = self._client("ecs")
            while not self._stop.is_set():
                arns = ecs.list_tasks(cluster=self.cluster, desiredStatus="RUNNING")["taskArns"]
                new = [arn for arn in arns if arn not in self._seen]
                if new:
                    tasks = ecs.describe_tasks(cluster=self.cluster, tasks=new, include=["TAGS"])
                    for task in tasks["tasks"]:
                        self._seen.add(task["taskArn"])
                        self._start(ecs, task)
                self._reap(ecs)
                time.sleep(self.poll_seconds)
        except BaseException as exc:  # reported to the test through check()
            self._errors.append(exc)

    def _start(self, ecs, task: dict) -> None:
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])
        containers = definition["taskDefinition"]["containerDefinitions"]
        overrides = {o["name"]: o for o in task.get("overrides", {}).get("containerOverrides", [])}
        container = next((c for c in containers if c["name"] in overrides), containers[0])
        override = overrides.get(container["name"], {})
        env = {item["name"]: item["value"] for item in container.get("environment", [])}
        env.update({item["name"]: item["value"] for item in override.get("environment", [])})
        secrets = self._client("secretsmanager")
        for secret in container.get("secrets", []):
            value = secrets.get_secret_value(SecretId=secret["valueFrom"])["SecretString"]
            env[secret["name"]] = value
        command = override.get("command") or container.get("command")
        assert command, f"task {task['taskArn']} has no command"
        task_id = task["taskArn"].rsplit("/", 1)[-1]
        # Fargate sizes a task in CPU units (1024 a vCPU) and MiB: the run's, else its definition's.
        sized = {**definition["taskDefinition"], **task.get("overrides", {})}
        cpu, memory = sized.get("cpu"), sized.get("memory")
        started = Container(
            name=f"ecs-{task_id}",
            image=container["image"],
            command=command,
            env={**self.role_env, **env},
            cpus=int(cpu) / 1024 if cpu else None,
            memory_mib=int(memory) if memory else None,
        )
        log_path = self.logs / f"{started.name}.log"
        process = self.launcher.start(started, log_path)
        self._running.append(
            _Running(
                task,
                container["name"],
                started,
                process,
                env.get("PREFECT__FLOW_RUN_ID"),
                log_path,
                sorted(env),
            )
        )
        self._send(task, container["name"], "RUNNING", None)

    def _reap(self, ecs) -> None:
        for running in list(self._running):
            code = running.process.poll()
            if code is None:
                if running.flow_run_id in self._kill and self._flow_run_is_running(running):
                    self._kill.discard(running.flow_run_id)
                    self.launcher.kill(running.container, running.process)
                continue
            self._running.remove(running)
            code = exit_code(code)
            ecs.stop_task(
                cluster=self.cluster,
                task=running.task["taskArn"],
                reason=f"Essential container exited with code {code}",
            )
            self._send(running.task, running.name, "STOPPED", code)
            self.finished.append(
                TaskRecord(
                    running.task["taskArn"],
                    running.flow_run_id,
                    code,
                    running.env_names,
                    running.log_path,
                )
            )

    def _flow_run_is_running(self, running: _Running) -> bool:
        response = httpx.get(f"{self.prefect_api_url}/flow_runs/{running.flow_run_id}", timeout=10)
        return response.status_code == 200 and response.json()["state_type"] == "RUNNING"

    def _send(self, task: dict, container: str, status: str, exit_code: int | None) -> None:
        """Post the event EventBridge forwards to the queue for an ECS task state change."""
        stopped = status == "STOPPED"
        detail = {
            "taskArn": task["taskArn"],
            "clusterArn": task["clusterArn"],
            "taskDefinitionArn": task["taskDefinitionArn"],
            "lastStatus": status,
            "desiredStatus": "STOPPED" if stopped else "RUNNING",
            "containers": [
                {
                    "name": container,
                    "lastStatus": status,
                    **({"exitCode": exit_code} if exit_code is not None else {}),
                }
            ],
            **(
                {"stopCode": "EssentialContainerExited", "stoppedReason": "Task stopped"}
                if stopped
                else {}
            ),
        }
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": task["taskArn"].split(":")[4],
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": task["taskArn"].split(":")[3],
            "resources": [task["taskArn"]],
            "detail": detail,
        }
        self._client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(event))


@contextlib.contextmanager
def moto_aws(config_dir: Path, region: str = "us-east-1") -> Iterator[dict[str, str]]:
    """A moto server on loopback; inside, boto3 reaches it through the environment (as AWS).

    Yields that environment (endpoint, dummy credentials, region) for subprocesses too.
    """
    # moto logs every request from its thread; keep that out of captured CLI output.
    for name in ("werkzeug", "moto"):
        logging.getLogger(name).setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its accounts in process memory, shared by every server in this test process.
    httpx.post(f"http://127.0.0.1:{port}/moto-api/reset").raise_for_status()
    nowhere = config_dir / "missing"
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(nowhere),
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere),
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN"):
                patch.delenv(name, raising=False)
            for name, value in env.items():
                patch.setenv(name, value)
            yield env
    finally:
        server.stop()
