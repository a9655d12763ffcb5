"""The ACI work pool's job template: prefect-azure's own, its defaults filled from the stack."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from deployments.presets import ACI, job_variables
from infra.azure.errors import CredentialsBlockMissing, StackOutputsMissing
from infra.azure.pool import (
    REQUIRED_OUTPUTS,
    aci_pool_template,
    image_uri,
    missing_outputs,
    pool_mismatches,
)
from infra.pools import RESULT_STORAGE_ENV

_IDENTITIES = (
    "/subscriptions/0d1e2f3a-0000-4000-8000-000000005ab5/resourceGroups/numerai-nodes/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities"
)
OUTPUTS = {
    "subscription_id": "0d1e2f3a-0000-4000-8000-000000005ab5",
    "resource_group": "numerai-nodes",
    "location": "westeurope",
    "registry_name": "numerainodesacr",
    "registry_login_server": "numerainodesacr.azurecr.io",
    "storage_account": "numerainodesresults",
    "results_container": "results",
    "blob_endpoint": "https://numerainodesresults.blob.core.windows.net/",
    "key_vault_name": "numerainodeskv",
    "key_vault_uri": "https://numerainodeskv.vault.azure.net/",
    "public_id_secret": "numerai-public-id",
    "secret_key_secret": "numerai-secret-key",
    "job_identity_id": f"{_IDENTITIES}/numerai-nodes-job",
    "job_identity_client_id": "9c4d2e1f-0000-4000-8000-00000000a0b1",
    "worker_identity_id": f"{_IDENTITIES}/numerai-nodes-worker",
    "worker_identity_client_id": "3e8b7c6d-0000-4000-8000-0000000000a1",
}


@dataclass
class Settings:
    """The attributes the pool reads of the Azure settings."""

    image_tag: str = "latest"
    preset: str = "gen-m"
    results_block: str = "results"
    credentials_block: str | None = None


def _defaults(template: dict) -> dict:
    properties = template["variables"]["properties"]
    return {name: spec.get("default") for name, spec in properties.items()}


def test_the_template_runs_each_container_as_the_job_identity_with_no_key_in_it():
    defaults = _defaults(aci_pool_template(OUTPUTS, image_uri(OUTPUTS, "v3")))

    assert defaults["image"] == "numerainodesacr.azurecr.io/numerai-nodes:v3"
    assert defaults["subscription_id"] == OUTPUTS["subscription_id"]
    assert defaults["resource_group_name"] == "numerai-nodes"
    assert defaults["identities"] == [OUTPUTS["job_identity_id"]]
    assert defaults["image_registry"] == {
        "registry_url": "numerainodesacr.azurecr.io",
        "identity": OUTPUTS["job_identity_id"],
    }
    assert defaults["entrypoint"] == ""  # the node image runs the worker's command itself
    assert {"cpu": defaults["cpu"], "memory": defaults["memory"]} == job_variables("gen-m", ACI)
    env = defaults["env"]
    assert env["NUMERAI_NODES_KEY_VAULT_URL"] == OUTPUTS["key_vault_uri"]
    assert env["AZURE_CLIENT_ID"] == OUTPUTS["job_identity_client_id"]
    assert env[RESULT_STORAGE_ENV].startswith("azure-blob-storage-container/")
    assert "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in env
    assert not {"NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY"} & set(env)
    # Without a credentials block the worker signs in with DefaultAzureCredential.
    assert defaults["aci_credentials"] is None


def test_a_preset_sizes_the_containers_and_one_beyond_aci_is_refused():
    defaults = _defaults(aci_pool_template(OUTPUTS, "img:1", preset="mem-m"))
    assert (defaults["cpu"], defaults["memory"]) == (2.0, 16.0)
    with pytest.raises(ValueError, match="'mem-m', the biggest mem preset that fits"):
        aci_pool_template(OUTPUTS, "img:1", preset="mem-l")


def test_missing_outputs_name_the_outputs_and_the_command():
    partial = {k: v for k, v in OUTPUTS.items() if k not in ("key_vault_uri", "job_identity_id")}
    assert missing_outputs(partial) == ["key_vault_uri", "job_identity_id"]
    assert missing_outputs(OUTPUTS) == []
    assert set(REQUIRED_OUTPUTS) <= set(OUTPUTS)
    with pytest.raises(StackOutputsMissing, match="key_vault_uri, job_identity_id") as error:
        aci_pool_template(partial, "img:1")
    assert "numerai-nodes infra azure up" in str(error.value)


def test_a_stack_naming_its_secrets_otherwise_than_the_node_reads_is_refused():
    renamed = {**OUTPUTS, "secret_key_secret": "numerai-secret"}
    with pytest.raises(StackOutputsMissing, match=r"'numerai-secret'.*'numerai-secret-key'"):
        aci_pool_template(renamed, "img:1")


def test_a_credentials_block_is_referenced_by_id(prefect_server):
    from prefect_azure import AzureContainerInstanceCredentials

    name = f"aci-{uuid.uuid4().hex[:8]}"
    block_id = AzureContainerInstanceCredentials(
        client_id="app", tenant_id="tenant", client_secret="secret"
    ).save(name)
    reference = {"$ref": {"block_document_id": str(block_id)}}
    by_name = _defaults(aci_pool_template(OUTPUTS, "img:1", credentials_block=name))
    by_id = _defaults(aci_pool_template(OUTPUTS, "img:1", credentials_block=str(block_id)))
    assert by_name["aci_credentials"] == by_id["aci_credentials"] == reference

    with pytest.raises(CredentialsBlockMissing, match=r"'absent'.*prefect block create"):
        aci_pool_template(OUTPUTS, "img:1", credentials_block="absent")


def test_pool_mismatches_name_each_drifted_variable():
    settings = Settings(image_tag="v3")
    template = aci_pool_template(
        OUTPUTS, image_uri(OUTPUTS, "v3"), results_block=settings.results_block
    )
    assert pool_mismatches(template, OUTPUTS, settings) == []

    properties = template["variables"]["properties"]
    properties["image"]["default"] = image_uri(OUTPUTS, "pinned")  # another tag: still fine
    properties["resource_group_name"]["default"] = "elsewhere"
    properties["memory"]["default"] = 4.0
    properties["identities"]["default"] = []
    assert pool_mismatches(template, OUTPUTS, settings) == [
        "resource_group_name is 'elsewhere', the stack has 'numerai-nodes'",
        "identities differs from the stack",
        "memory is 4.0, the stack has 8.0",
    ]
    properties["image"]["default"] = "docker.io/someone/else:1"
    drifted = pool_mismatches(template, OUTPUTS, settings)
    assert drifted[1].startswith("image is 'docker.io/someone/else:1', the stack has"), drifted
