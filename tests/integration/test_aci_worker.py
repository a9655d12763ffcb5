"""The real prefect-azure ACI worker runs the tournament node against loopback fakes of Azure.

The worker is `prefect worker start --type azure-container-instance`, unmodified, signed in as a
service principal (an AzureContainerInstanceCredentials block). Azure's SDKs keep their real
endpoints: `HTTPS_PROXY` points at a loopback CONNECT proxy that terminates TLS with a test CA
(`REQUESTS_CA_BUNDLE`) and hands `login.microsoftonline.com`, `management.azure.com` and the
vault's host to the fakes in tests/integration/azure_fakes.py. The pool's job template is the
project's (`infra.azure.pool.aci_pool_template`). Each container group the worker deploys runs
the project's image with podman (where podman cannot run, a local process) under the group's CPU
and memory, as the stack's job identity: the node reads the Numerai keys from the Key Vault fake
with it, and keeps the trained model in Blob storage (Azurite).
"""

from __future__ import annotations

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

from deployments.presets import ACI, job_variables
from flows.key_vault import PUBLIC_ID_SECRET, SECRET_KEY_SECRET
from infra.azure.pool import DEFAULT_PRESET, RESULTS_BLOCK_TYPE, aci_pool_template, image_uri
from infra.azure.settings import RESULTS_BLOCK
from infra.pools import upsert_pool
from sandbox.runner import Sandbox
from tests.integration import podman
from tests.integration.azure_fakes import (
    ARM_HOST,
    LOGIN_HOST,
    VAULT_AUDIENCE,
    ArmFake,
    ContainerGroup,
    EntraFake,
    KeyVaultFake,
    Token,
)
from tests.integration.azurite import Azurite
from tests.integration.containers import Launcher
from tests.integration.servers import UvicornThread
from tests.integration.tls_proxy import InterceptingProxy

pytestmark = [
    pytest.mark.integration,
    pytest.mark.container,
    # prefect-azure 0.4.13's blob block reads with azure-storage-blob's deprecated method.
    pytest.mark.filterwarnings("ignore:download_to_stream is deprecated:DeprecationWarning"),
]
PROJECT = Path(__file__).parents[2]
POOL = "azure"
CREDENTIALS_BLOCK = "fake-azure"
TENANT = "5b3c1a4e-0000-4000-8000-00000000a2ee"
SUBSCRIPTION = "0d1e2f3a-0000-4000-8000-000000005ab5"
RESOURCE_GROUP = "numerai-nodes"
WORKER_APP = "7a1f0c2b-0000-4000-8000-0000000a9915"  # the worker's service principal
WORKER_SECRET = "worker-client-secret"
OPERATOR_APP = "4f2e9d8c-0000-4000-8000-0000000a0e7a"  # who stores the keys, as `up` does
OPERATOR_SECRET = "operator-client-secret"
JOB_CLIENT_ID = "9c4d2e1f-0000-4000-8000-00000000a0b1"
_IDENTITIES = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities"
)
VAULT = "numerainodeskv"
OUTPUTS = {
    "subscription_id": SUBSCRIPTION,
    "resource_group": RESOURCE_GROUP,
    "location": "westeurope",
    "registry_name": "numerainodesacr",
    "registry_login_server": "numerainodesacr.azurecr.io",
    "storage_account": "numerainodesresults",
    "results_container": "results",
    "blob_endpoint": "https://numerainodesresults.blob.core.windows.net/",
    "key_vault_name": VAULT,
    "key_vault_uri": f"https://{VAULT}.vault.azure.net/",
    "public_id_secret": PUBLIC_ID_SECRET,
    "secret_key_secret": SECRET_KEY_SECRET,
    "job_identity_id": f"{_IDENTITIES}/numerai-nodes-job",
    "job_identity_client_id": JOB_CLIENT_ID,
    "worker_identity_id": f"{_IDENTITIES}/numerai-nodes-worker",
    "worker_identity_client_id": "3e8b7c6d-0000-4000-8000-0000000000a1",
}
MODEL = "sandbox_model"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass
class Cloud:
    sandbox: Sandbox
    entra: EntraFake
    vault: KeyVaultFake
    arm: ArmFake
    azurite: Azurite
    deployment_id: Any
    worker_log: Path

    def start(self, trigger_id: str) -> Any:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            run = client.create_flow_run_from_deployment(
                self.deployment_id, parameters={"trigger_id": trigger_id}
            )
        return run.id

    def wait(self, flow_run_id: Any, timeout: float = 240) -> Any:
        from prefect import get_client

        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                flow_run = client.read_flow_run(flow_run_id)
                if flow_run.state_type is not None and flow_run.state_type.value in FINAL:
                    return flow_run
                time.sleep(0.5)
        logs = [g.log_path for g in self.arm.started]
        tail = "\n".join(p.read_text(errors="replace")[-3000:] for p in logs if p.exists())
        worker = self.worker_log.read_text(errors="replace")[-4000:]
        raise AssertionError(
            f"flow run {flow_run_id} did not finish: {flow_run.state}\n"
            f"worker log:\n{worker}\ncontainer logs:\n{tail}"
        )

    def group_of(self, flow_run_id: Any, timeout: float = 0) -> ContainerGroup:
        """The container group the worker deployed for a flow run."""
        wanted = {"name": "PREFECT__FLOW_RUN_ID", "value": str(flow_run_id)}
        deadline = time.monotonic() + timeout
        while True:
            found = [g for g in self.arm.started if wanted in g.spec["environmentVariables"]]
            if found or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        (group,) = found
        return group

    def ended(self, group: ContainerGroup, timeout: float = 60) -> bool:
        """Whether the group's container ends and the worker deletes the group within `timeout`
        (the flow run is final a moment before its process exits)."""
        deadline = time.monotonic() + timeout
        while group.name not in self.arm.deleted and time.monotonic() < deadline:
            time.sleep(0.2)
        return group.finished_at is not None and group.name in self.arm.deleted

    def task_states(self, flow_run_id: Any) -> dict[str, str]:
        from prefect import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return {run.name.rsplit("-", 1)[0]: run.state_name or "?" for run in runs}  # "train-a1b"

    def submissions(self, trigger_id: str) -> list:
        return [s for s in self.sandbox.submissions() if s.trigger_id == trigger_id]


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    prefect = Path(sys.executable).parent / "prefect"
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(prefect), "worker", "start", "--pool", POOL, "--type", ACI],
            env=env, cwd=log.parent, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGINT, 8), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def _deploy(sandbox_url: str) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("tournament-node")
        return client.create_deployment(
            flow_id=flow_id,
            name="tournament-aci",
            work_pool_name=POOL,
            entrypoint="flows/tournament.py:tournament_node",
            parameters={"node": {"name": "tournament", "numerai_model": MODEL}},
            # The image's WORKDIR holds the project; a local process runs in the project.
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": "."}}],
            job_variables={
                "env": {"NUMERAI_API_URL": sandbox_url, "NUMERAI_NODES_RETRY_DELAY_SCALE": "0"},
                "task_watch_poll_interval": 0.5,
                "stream_output": True,  # the worker reads the container's logs from ARM
            },
        )


@pytest.fixture(scope="module")
def cloud(
    tmp_path_factory, prefect_server, launcher: Launcher, azurite: Azurite
) -> Iterator[Cloud]:
    from prefect_azure import AzureBlobStorageCredentials, AzureContainerInstanceCredentials
    from prefect_azure.blob_storage import AzureBlobStorageContainer

    root = tmp_path_factory.mktemp("aci")
    entra = EntraFake(TENANT)
    entra.add_application(WORKER_APP, WORKER_SECRET)
    entra.add_application(OPERATOR_APP, OPERATOR_SECRET)
    # Only the job identity reads the keys: the worker's principal never may.
    vault = KeyVaultFake(VAULT, entra, readers=[JOB_CLIENT_ID], writers=[OPERATOR_APP])
    assert vault.url == OUTPUTS["key_vault_uri"]
    with (
        Sandbox(root / "sandbox", size="tiny", models=[MODEL]) as sandbox,
        UvicornThread(entra.app) as login,
        UvicornThread(vault.app) as vault_api,
    ):
        arm = ArmFake(
            root / "container-groups",
            entra,
            launcher=launcher,
            location=OUTPUTS["location"],
            identities={
                OUTPUTS["job_identity_id"]: JOB_CLIENT_ID,
                OUTPUTS["worker_identity_id"]: OUTPUTS["worker_identity_client_id"],
            },
            registries=[OUTPUTS["registry_login_server"]],
            callers=[WORKER_APP],
            identity_endpoint=f"{login.url}/msi/token",
        )
        routes = {LOGIN_HOST: login.port, vault.host: vault_api.port}
        with UvicornThread(arm.app) as arm_api:
            routes[ARM_HOST] = arm_api.port
            with InterceptingProxy(routes, root / "tls") as proxy:
                network = {
                    "HTTPS_PROXY": proxy.url,
                    "NO_PROXY": "127.0.0.1,localhost",
                    "REQUESTS_CA_BUNDLE": str(proxy.ca_path),
                }
                arm.container_env.update(network)
                arm.container_files.append(proxy.ca_path)
                _store_keys(vault, network, sandbox)
                azurite.create_container(OUTPUTS["results_container"])
                # Production's block reaches the account by URL with the container's managed
                # identity, which Azurite's plain-HTTP endpoint cannot serve: here it signs in
                # with Azurite's connection string. Reads and writes are the same.
                AzureBlobStorageContainer(
                    container_name=OUTPUTS["results_container"],
                    credentials=AzureBlobStorageCredentials(
                        connection_string=azurite.connection_string
                    ),
                ).save(RESULTS_BLOCK, overwrite=True)
                credentials_id = AzureContainerInstanceCredentials(
                    client_id=WORKER_APP, tenant_id=TENANT, client_secret=WORKER_SECRET
                ).save(CREDENTIALS_BLOCK, overwrite=True)
                image = image_uri(OUTPUTS, "test")
                if launcher.kind == "podman":
                    podman.tag(podman.IMAGE, image)  # as if pushed to the stack's registry
                template = aci_pool_template(OUTPUTS, image, credentials_block=CREDENTIALS_BLOCK)
                assert _default(template, "aci_credentials") == {
                    "$ref": {"block_document_id": str(credentials_id)}
                }
                upsert_pool(POOL, ACI, template)
                deployment_id = _deploy(sandbox.url)
                worker_env = {
                    key: value
                    for key, value in os.environ.items()
                    if not key.startswith(("NUMERAI_", "PREFECT_", "AZURE_", "IDENTITY_"))
                }
                worker_env.update(
                    PREFECT_API_URL=prefect_server,
                    PREFECT_HOME=str(root / "worker-prefect"),
                    PREFECT_SERVER_ANALYTICS_ENABLED="false",
                    PREFECT_WORKER_QUERY_SECONDS="1",
                    **network,
                )
                worker_log = root / "worker.log"
                worker = _worker(worker_env, worker_log)
                try:
                    yield Cloud(sandbox, entra, vault, arm, azurite, deployment_id, worker_log)
                finally:
                    _stop(worker)
                    arm.stop()


def _store_keys(vault: KeyVaultFake, network: dict[str, str], sandbox: Sandbox) -> None:
    """Store the sandbox's keys in the vault as `up` would: Key Vault's SDK, signed in as the
    operator's service principal."""
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    with pytest.MonkeyPatch.context() as patch:
        for name, value in network.items():
            patch.setenv(name, value)
        with (
            ClientSecretCredential(TENANT, OPERATOR_APP, OPERATOR_SECRET) as credential,
            SecretClient(vault.url, credential) as client,
        ):
            client.set_secret(PUBLIC_ID_SECRET, sandbox.public_id)
            client.set_secret(SECRET_KEY_SECRET, sandbox.secret_key)


def _default(template: dict[str, Any], variable: str) -> Any:
    return template["variables"]["properties"][variable].get("default")


def _texts(cloud: Cloud) -> dict[str, str]:
    """Everything that left a flow run's secrets' reach: ARM request bodies, the worker's log
    (with the container output it streamed) and each container's log."""
    texts = {f"ARM request {i}": body for i, body in enumerate(cloud.arm.bodies)}
    texts["worker log"] = cloud.worker_log.read_text(errors="replace")
    for group in cloud.arm.started:
        if group.log_path.exists():
            texts[f"log of {group.name}"] = group.log_path.read_text(errors="replace")
    return texts


def test_a_flow_run_on_aci_submits_with_keys_from_key_vault(cloud):
    flow_run = cloud.wait(cloud.start("aci-1"))

    assert flow_run.state_type.value == "COMPLETED", flow_run.state
    (submission,) = cloud.submissions("aci-1")
    assert submission.model_name == MODEL

    group = cloud.group_of(flow_run.id)
    assert cloud.ended(group), "the container did not end, or the worker kept its group"
    assert group.exit_code == 0
    # The container had no key in its environment: it read both from Key Vault, as the job
    # identity, with a token from the managed identity endpoint.
    assert group.container is not None
    assert not {"NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY"} & set(group.container.env)
    assert (JOB_CLIENT_ID, PUBLIC_ID_SECRET) in cloud.vault.reads
    assert (JOB_CLIENT_ID, SECRET_KEY_SECRET) in cloud.vault.reads
    assert {who for who, _ in cloud.vault.reads} == {JOB_CLIENT_ID}
    assert Token(JOB_CLIENT_ID, VAULT_AUDIENCE, "managed_identity") in cloud.entra.issued

    # The ARM template the worker sent: the job identity, the registry through it, the preset.
    resource = group.resource
    job_identity = OUTPUTS["job_identity_id"]
    assert list(resource["identity"]["userAssignedIdentities"]) == [job_identity]
    assert resource["properties"]["imageRegistryCredentials"] == [
        {"server": OUTPUTS["registry_login_server"], "identity": job_identity}
    ]
    assert group.spec["image"] == image_uri(OUTPUTS, "test")
    sized = job_variables(DEFAULT_PRESET, ACI)
    assert group.spec["resources"]["requests"] == {
        "cpu": sized["cpu"],
        "memoryInGB": sized["memory"],
    }
    env = {e["name"]: e.get("value") for e in group.spec["environmentVariables"]}
    assert env["NUMERAI_NODES_KEY_VAULT_URL"] == OUTPUTS["key_vault_uri"]
    assert env["AZURE_CLIENT_ID"] == JOB_CLIENT_ID
    assert env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] == f"{RESULTS_BLOCK_TYPE}/{RESULTS_BLOCK}"

    # No key value anywhere: not in what the worker sent to Azure, nor in any log.
    for where, text in _texts(cloud).items():
        for key in (cloud.sandbox.public_id, cloud.sandbox.secret_key):
            assert key not in text, f"a Numerai key is in the {where}"
    # The worker streamed the container's output from ARM.
    assert "Finished in state Completed" in cloud.worker_log.read_text(errors="replace")
    assert group.name not in cloud.arm.groups
    assert any(
        name.startswith("models/")
        for name in cloud.azurite.blob_names(OUTPUTS["results_container"])
    ), "the trained model was not stored in Blob storage"


def test_a_later_run_in_a_fresh_container_loads_the_model_from_blob_storage(cloud):
    if not cloud.submissions("aci-1"):  # run alone: a first run trains
        first = cloud.wait(cloud.start("aci-2"))
        assert first.state_type.value == "COMPLETED", first.state
    later = cloud.wait(cloud.start("aci-3"))

    assert later.state_type.value == "COMPLETED", later.state
    states = cloud.task_states(later.id)
    assert "train" not in states and states["load-model"] == "Completed", states
    containers = [g.container.name for g in cloud.arm.started if g.container]
    assert len(set(containers)) == len(containers) > 1, "runs shared a container"
    assert len(cloud.submissions("aci-3")) == 1


def test_a_killed_container_crashes_the_flow_run_without_a_submission(cloud):
    trigger_id = f"aci-killed-{uuid.uuid4().hex[:6]}"
    # A slow Numerai API keeps the run's submission seconds away, so the kill lands mid-run.
    cloud.sandbox.faults.latency_s = 2.0
    try:
        flow_run_id = cloud.start(trigger_id)
        group = cloud.group_of(flow_run_id, timeout=60)
        deadline = time.monotonic() + 120
        while group.started_at is None or _state(flow_run_id) != "RUNNING":
            assert time.monotonic() < deadline, "the flow run never ran"
            time.sleep(0.2)
        cloud.arm.kill(group)  # as an out-of-memory kill ends a container
        flow_run = cloud.wait(flow_run_id)
    finally:
        cloud.sandbox.faults.latency_s = 0.0

    assert cloud.ended(group) and group.exit_code == 137
    # prefect-azure reports the container's own exit code, and the worker marks the run crashed.
    assert flow_run.state_type.value == "CRASHED", flow_run.state
    assert "non-zero status code 137" in (flow_run.state.message or ""), flow_run.state.message
    assert cloud.submissions(trigger_id) == []


def _state(flow_run_id: Any) -> str | None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        state_type = client.read_flow_run(flow_run_id).state_type
    return state_type.value if state_type else None
