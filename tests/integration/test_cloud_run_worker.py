"""The real prefect-gcp Cloud Run v2 worker runs the tournament node against a fake Google.

The worker is `prefect worker start --type cloud-run-v2`, unmodified. Its endpoint
`https://run.googleapis.com` is hard-coded, so it reaches the fakes the way any client reaches
Google through a corporate proxy: `HTTPS_PROXY` (httplib2 with PySocks) points at a loopback
CONNECT proxy that terminates TLS with a test CA's certificate (`HTTPLIB2_CA_CERTS`) and hands
the HTTP to the Cloud Run fake. The fake's containers get the same network for Cloud Storage,
where the trained model lives between runs. The pool's job template is the project's
(`infra.gcp.pool.cloud_run_pool_template`). Each execution runs the project's image with podman
(where podman cannot run, a local process), under the job's CPU and memory limits.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.gcp.pool import SECRET_OUTPUTS, cloud_run_pool_template
from infra.gcp.settings import RESULTS_BLOCK
from infra.pools import upsert_pool
from sandbox.runner import Sandbox
from tests.integration import podman
from tests.integration.cloud_run_fake import CloudRunFake
from tests.integration.containers import Launcher
from tests.integration.gcs_fake import GcsFake
from tests.integration.servers import UvicornThread
from tests.integration.tls_proxy import InterceptingProxy

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).parents[2]
POOL = "cloud-run"
CREDENTIALS_BLOCK = "fake-gcp"
OUTPUTS = {
    "project": "fake-project",
    "region": "europe-west4",
    "repository_url": "europe-west4-docker.pkg.dev/fake-project/numerai-nodes",
    "bucket_name": "fake-project-numerai-nodes-results",
    "service_account_email": "nodes@fake-project.iam.gserviceaccount.com",
    "public_id_secret": "numerai-public-id",
    "secret_key_secret": "numerai-secret-key",
}
MODEL = "my_model"  # the tournament node's numerai_model in prefect.yaml
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass
class Cloud:
    sandbox: Sandbox
    run: CloudRunFake
    gcs: GcsFake
    deployments: dict[str, Any]

    def start(self, deployment: str, trigger_id: str) -> Any:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            return client.create_flow_run_from_deployment(
                self.deployments[deployment], parameters={"trigger_id": trigger_id}
            )

    def wait(self, flow_run_id: Any, timeout: float = 240) -> Any:
        from prefect import get_client

        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                flow_run = client.read_flow_run(flow_run_id)
                if flow_run.state_type is not None and flow_run.state_type.value in FINAL:
                    return flow_run
                time.sleep(0.5)
        logs = [e.home / "container.log" for e in self.run.started]
        tail = "\n".join(p.read_text(errors="replace")[-3000:] for p in logs if p.exists())
        raise AssertionError(f"flow run {flow_run_id} did not finish: {flow_run.state}\n{tail}")

    def wait_deleted(self, job_name: str, timeout: float = 30) -> bool:
        """Whether the worker deletes the job within `timeout` (it does after the run ends)."""
        deadline = time.monotonic() + timeout
        while job_name not in self.run.deleted and time.monotonic() < deadline:
            time.sleep(0.2)
        return job_name in self.run.deleted and job_name not in self.run.jobs

    def task_states(self, flow_run_id: Any) -> dict[str, str]:
        from prefect import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return {run.name.rsplit("-", 1)[0]: run.state_name or "?" for run in runs}  # "train-a1b"

    def jobs_for(self, flow_run_id: Any) -> list[dict[str, Any]]:
        """The Cloud Run jobs the worker created for one flow run."""
        wanted = {"name": "PREFECT__FLOW_RUN_ID", "value": str(flow_run_id)}
        return [
            job
            for job in self.run.created
            if wanted in job["template"]["template"]["containers"][0]["env"]
        ]


def _node_parameters() -> dict[str, Any]:
    catalogue = yaml.safe_load((PROJECT / "prefect.yaml").read_text())  # the local node's spec
    node = next(d for d in catalogue["deployments"] if d["name"] == "tournament")
    return node["parameters"]


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    prefect = Path(sys.executable).parent / "prefect"
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(prefect), "worker", "start", "--pool", POOL, "--type", "cloud-run-v2"],
            env=env, cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGINT, 4), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def _deploy(sandbox_url: str) -> dict[str, Any]:
    from prefect import get_client

    env = {"NUMERAI_API_URL": sandbox_url, "NUMERAI_NODES_RETRY_DELAY_SCALE": "0"}
    # The image's WORKDIR holds the project; the fake runs containers in the project directory.
    pull_steps = [{"prefect.deployments.steps.set_working_directory": {"directory": "."}}]
    variants: dict[str, dict[str, Any]] = {
        "tournament": {"env": env},
        "exits-non-zero": {
            "env": env,
            "command": f"{Path(sys.executable).name} -c 'raise SystemExit(3)'",
            "keep_job": True,
        },
    }
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("tournament-node")
        return {
            name: client.create_deployment(
                flow_id=flow_id,
                name=name,
                work_pool_name=POOL,
                entrypoint="flows/tournament.py:tournament_node",
                parameters=_node_parameters(),
                pull_steps=pull_steps,
                job_variables=job_variables,
            )
            for name, job_variables in variants.items()
        }


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, prefect_server, launcher: Launcher) -> Iterator[Cloud]:
    if importlib.util.find_spec("socks") is None:
        pytest.fail("PySocks is missing: httplib2 needs it to use HTTPS_PROXY (`uv sync`).")
    from prefect_gcp import GcpCredentials, GcsBucket

    root = tmp_path_factory.mktemp("cloud-run")
    with Sandbox(root / "sandbox", size="tiny", models=[MODEL]) as sandbox:
        secrets = {
            OUTPUTS[SECRET_OUTPUTS["NUMERAI_PUBLIC_ID"]]: sandbox.public_id,
            OUTPUTS[SECRET_OUTPUTS["NUMERAI_SECRET_KEY"]]: sandbox.secret_key,
        }
        run = CloudRunFake(root / "containers", launcher=launcher, secrets=secrets)
        gcs = GcsFake([OUTPUTS["bucket_name"]])
        with UvicornThread(run.app) as run_api, UvicornThread(gcs.app) as gcs_api:
            routes = {
                "run.googleapis.com": run_api.port,
                "oauth2.googleapis.com": run_api.port,
                "storage.googleapis.com": gcs_api.port,
            }
            with InterceptingProxy(routes, root / "tls") as proxy:
                network = {
                    "HTTPS_PROXY": proxy.url,
                    "NO_PROXY": "127.0.0.1,localhost",
                    "HTTPLIB2_CA_CERTS": str(proxy.ca_path),  # the worker's Cloud Run client
                    "REQUESTS_CA_BUNDLE": str(proxy.ca_path),  # google-auth and Cloud Storage
                }
                run.container_env.update(network)
                run.container_files.append(proxy.ca_path)
                info = run.service_account_info(OUTPUTS["project"])
                credentials = GcpCredentials(service_account_info=info)
                credentials_id = credentials.save(CREDENTIALS_BLOCK, overwrite=True)
                GcsBucket(bucket=OUTPUTS["bucket_name"], gcp_credentials=credentials).save(
                    RESULTS_BLOCK, overwrite=True
                )
                image = f"{OUTPUTS['repository_url']}/numerai-nodes:test"
                if launcher.kind == "podman":
                    podman.tag(podman.IMAGE, image)  # as if pushed to Artifact Registry
                template = cloud_run_pool_template(
                    OUTPUTS, image, credentials_block_id=str(credentials_id)
                )
                upsert_pool(POOL, "cloud-run-v2", template)
                deployments = _deploy(sandbox.url)
                worker_env = {
                    key: value
                    for key, value in os.environ.items()
                    if not key.startswith(("NUMERAI_", "PREFECT_"))
                }
                worker_env.update(
                    PREFECT_API_URL=prefect_server,
                    PREFECT_HOME=str(root / "worker-prefect"),
                    PREFECT_SERVER_ANALYTICS_ENABLED="false",
                    PREFECT_WORKER_QUERY_SECONDS="1",
                    **network,
                )
                worker = _worker(worker_env, root / "worker.log")
                try:
                    yield Cloud(sandbox, run, gcs, deployments)
                finally:
                    _stop(worker)
                    run.stop()


def test_a_flow_run_on_cloud_run_submits_with_the_trigger_id(cloud):
    flow_run = cloud.wait(cloud.start("tournament", "cloud-run-1").id)

    assert flow_run.state_type.value == "COMPLETED", flow_run.state
    (submission,) = [s for s in cloud.sandbox.submissions() if s.trigger_id == "cloud-run-1"]
    assert submission.model_name == MODEL

    (job,) = cloud.jobs_for(flow_run.id)
    template = job["template"]["template"]
    assert int(template["timeout"].removesuffix("s")) > 600
    env = {entry["name"]: entry for entry in template["containers"][0]["env"]}
    for name in ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY"):
        assert "value" not in env[name], f"{name} is a plain value"
        assert env[name]["valueSource"]["secretKeyRef"]["secret"] == OUTPUTS[SECRET_OUTPUTS[name]]
    assert cloud.wait_deleted(job["name"]), "the worker did not delete the job"
    assert cloud.gcs.objects[OUTPUTS["bucket_name"]], "the trained model was not stored in GCS"


def test_a_later_run_in_a_fresh_container_loads_the_model_instead_of_training(cloud):
    if not cloud.gcs.objects[OUTPUTS["bucket_name"]]:  # run alone: a first run trains
        first = cloud.wait(cloud.start("tournament", "cloud-run-2").id)
        assert first.state_type.value == "COMPLETED", first.state
    later = cloud.wait(cloud.start("tournament", "cloud-run-3").id)

    assert later.state_type.value == "COMPLETED", later.state
    states = cloud.task_states(later.id)
    assert "train" not in states and states["load-model"] == "Completed"
    containers = {e.container.name for e in cloud.run.started if e.container}
    assert len(containers) == len(cloud.run.started) > 1, "executions shared a container"
    assert [s.trigger_id for s in cloud.sandbox.submissions()].count("cloud-run-3") == 1


def test_a_container_that_exits_non_zero_crashes_the_flow_run(cloud):
    flow_run = cloud.wait(cloud.start("exits-non-zero", f"fails-{uuid.uuid4().hex[:6]}").id)

    assert flow_run.state_type.value == "CRASHED", flow_run.state
    # prefect-gcp reports any failed execution as status code 1, whatever the container's code.
    assert "non-zero status code 1" in flow_run.state.message, flow_run.state.message
    (job,) = cloud.jobs_for(flow_run.id)
    assert job["name"] in cloud.run.jobs, "keep_job: the job stays"
    (execution,) = [e for e in cloud.run.started if e.job == job["name"]]
    assert execution.exit_code == 3
