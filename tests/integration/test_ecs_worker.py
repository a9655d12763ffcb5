"""The real prefect-aws ECS worker runs the tournament node on a moto ECS stack made by `up`.

moto stands in for AWS (CloudFormation, ECS, ECR, S3, SQS, Secrets Manager). EcsTaskRunner stands
in for Fargate: it runs each task the worker starts in a fresh container of the project's image
(podman; where podman cannot run, a local process in a fresh home), with the task's CPU and
memory, and posts the task-state events the worker's observer reads from SQS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from uuid import UUID

import boto3
import pytest
from prefect import get_client
from pydantic import SecretStr

from infra.aws.place import up
from infra.aws.settings import AwsSettings
from infra.cloud import NumeraiKeys
from sandbox.runner import Sandbox
from tests.integration import podman
from tests.integration.containers import Launcher
from tests.integration.ecs_runner import EcsTaskRunner, moto_aws
from tests.integration.servers import _prefect_executable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning"),
]
PROJECT = Path(__file__).parents[2]
POOL = "ecs"
MODEL = "sandbox_model"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@pytest.fixture(scope="module")
def aws(tmp_path_factory, prefect_server):
    with moto_aws(tmp_path_factory.mktemp("aws-config")) as env:
        yield env


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with Sandbox(tmp_path_factory.mktemp("sandbox"), size="tiny", models=(MODEL,)) as running:
        yield running


@pytest.fixture(scope="module")
def stack(aws, sandbox):
    """`up` on moto with the sandbox's keys: the stack, the secrets, the S3 block, the ecs pool."""
    keys = NumeraiKeys(SecretStr(sandbox.public_id), SecretStr(sandbox.secret_key))
    return up(AwsSettings(pool_name=POOL, poll_seconds=0.2, _env_file=None), keys)


@pytest.fixture(scope="module")
def deployment_id(stack, sandbox):
    """The tournament node on the ecs pool; its code in the working directory (/app in the image,
    the project directory for a local process)."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("tournament-node")
        return client.create_deployment(
            flow_id=flow_id,
            name="tournament-ecs",
            entrypoint="flows/tournament.py:tournament_node",
            work_pool_name=POOL,
            parameters={"node": {"name": "tournament", "numerai_model": MODEL}},
            job_variables={
                "env": {"NUMERAI_API_URL": sandbox.url, "NUMERAI_NODES_RETRY_DELAY_SCALE": "0"}
            },
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": "."}}],
        )


@pytest.fixture(scope="module")
def worker(aws, prefect_server, stack, tmp_path_factory):
    """`prefect worker start --pool ecs --type ecs`: the real worker and its SQS observer."""
    home = tmp_path_factory.mktemp("ecs-worker")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NUMERAI_"))}
    env.update(
        aws,
        PREFECT_API_URL=prefect_server,
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    log_path = home / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [_prefect_executable(), "worker", "start", "--pool", POOL, "--type", "ecs"],
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log_path
    finally:
        process.send_signal(signal.SIGINT)  # workers stop cleanly on SIGINT
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def runner(aws, stack, worker, prefect_server, tmp_path_factory, launcher: Launcher):
    if launcher.kind == "podman":  # as if pushed to the stack's ECR repository
        podman.tag(podman.IMAGE, stack.image)
    with EcsTaskRunner(
        cluster=stack.outputs["ClusterName"],
        queue_url=boto3.client("sqs").get_queue_url(QueueName="prefect-ecs-tasks-events")[
            "QueueUrl"
        ],
        launcher=launcher,
        logs=tmp_path_factory.mktemp("containers"),
        role_env=aws,
        prefect_api_url=prefect_server,
    ) as running:
        yield running


def _start(deployment_id, trigger_id: str) -> str:
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"trigger_id": trigger_id}
        )
    return str(run.id)


def _wait(flow_run_ids: list[str], runner: EcsTaskRunner, worker_log: Path, timeout=180):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runner.check()
            runs = [client.read_flow_run(UUID(str(run_id))) for run_id in flow_run_ids]
            if all(run.state and run.state.type.value in FINAL for run in runs):
                return runs
            time.sleep(1)
    logs = "\n".join(record.log_path.read_text()[-3000:] for record in runner.finished)
    raise AssertionError(
        f"runs did not finish: {[(r.id, r.state) for r in runs]}\n"
        f"worker log:\n{worker_log.read_text()[-4000:]}\ncontainer logs:\n{logs}"
    )


def _task_state(flow_run_id: str, task_name: str) -> str:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    (run,) = [r for r in runs if r.task_key.startswith(task_name) or r.name.startswith(task_name)]
    assert run.state is not None, "a task run read from the server has a state"
    return run.state.name or "?"


def _submissions(sandbox: Sandbox, trigger_id: str) -> list:
    return [s for s in sandbox.submissions() if s.trigger_id == trigger_id]


def test_the_ecs_worker_runs_the_node_and_a_fresh_container_loads_the_model_from_s3(
    runner, worker, deployment_id, sandbox, stack
):
    first = _start(deployment_id, "ecs-1")
    (run,) = _wait([first], runner, worker)
    assert run.state.type.value == "COMPLETED", run.state
    assert len(_submissions(sandbox, "ecs-1")) == 1
    assert _task_state(first, "train") == "Completed"
    bucket = stack.outputs["BucketName"]
    assert boto3.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount", 0) > 0

    second = _start(deployment_id, "ecs-2")
    (done,) = _wait([second], runner, worker)
    assert done.state.type.value == "COMPLETED", done.state
    assert len(_submissions(sandbox, "ecs-2")) == 1
    # A fresh home: the model came from the model store in S3, and nothing trained.
    assert _task_state(second, "load-model") == "Completed"

    # A slow Numerai API keeps the run's submission seconds away, so the kill lands mid-run
    # (with the model loaded, a fast run could otherwise submit within the runner's poll).
    sandbox.faults.latency_s = 2.0
    try:
        crashing = _start(deployment_id, "ecs-oom")
        runner.kill_when_running(crashing)
        (crashed,) = _wait([crashing], runner, worker)
    finally:
        sandbox.faults.latency_s = 0.0

    assert crashed.state.type.value == "CRASHED", crashed.state
    assert "non-zero exit code" in (crashed.state.message or "")
    assert _submissions(sandbox, "ecs-oom") == []

    records = {r.flow_run_id: r for r in runner.finished}
    assert records[first].exit_code == 0 and records[crashing].exit_code == 137
    # The keys reached the container through the task definition's secrets, not as values.
    assert {"NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY"} <= set(records[first].env_names)
