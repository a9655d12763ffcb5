"""The Azure Terraform is formatted, documented, private and least-privilege; checkov agrees."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).parents[3]
AZURE = ROOT / "infra" / "azure"
# Built-in roles that would let a node's container (or its worker) change anything it can reach.
_BROAD_ROLES = {
    "Owner",
    "Contributor",
    "User Access Administrator",
    "Role Based Access Control Administrator",
}
JOB = "${azurerm_user_assigned_identity.job.principal_id}"
WORKER = "${azurerm_user_assigned_identity.worker[0].principal_id}"
# The outputs another part of the project (the ACI pool template) reads, by name.
OUTPUTS = {
    "subscription_id",
    "resource_group",
    "location",
    "registry_name",
    "registry_login_server",
    "storage_account",
    "results_container",
    "blob_endpoint",
    "key_vault_name",
    "key_vault_uri",
    "public_id_secret",
    "secret_key_secret",
    "job_identity_id",
    "job_identity_client_id",
    "worker_identity_id",
    "worker_identity_client_id",
    "push_pool",
    "push_principal_id",
}
PUSH = "${var.push_principal_id}"
PUSH_COUNT = '${var.push_principal_id != "" ? 1 : 0}'


def _plain(value: Any) -> Any:
    """python-hcl2 output without its quoting and bookkeeping keys."""
    if isinstance(value, dict):
        return {
            _plain(key): _plain(item)
            for key, item in value.items()
            if key not in ("__is_block__", "__comments__")
        }
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def config() -> dict[str, list]:
    merged: dict[str, list] = {}
    for path in sorted(AZURE.glob("*.tf")):
        with path.open() as handle:
            for block, items in _plain(hcl2.load(handle)).items():
                merged.setdefault(block, []).extend(items)
    return merged


@pytest.fixture(scope="module")
def resources(config) -> dict[tuple[str, str], dict]:
    found = {}
    for item in config["resource"]:
        for kind, named in item.items():
            for name, body in named.items():
                found[(kind, name)] = body
    return found


def _blocks(config: dict, kind: str) -> dict[str, dict]:
    return {name: body for item in config.get(kind, []) for name, body in item.items()}


def _assignments(resources: dict) -> dict[str, dict]:
    return {
        name: body for (kind, name), body in resources.items() if kind == "azurerm_role_assignment"
    }


def test_terraform_fmt():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH (install Terraform >= 1.5 to check formatting)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(AZURE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive infra/azure`:\n{result.stdout}"


def test_azurerm_provider_is_pinned(config):
    (terraform,) = config["terraform"]
    azurerm = terraform["required_providers"][0]["azurerm"]
    assert azurerm["source"] == "hashicorp/azurerm"
    assert re.match(r"^(~>|=|>=)\s*\d", azurerm["version"]), azurerm["version"]
    assert re.match(r"^>=\s*1\.\d", terraform["required_version"])
    (provider,) = _blocks(config, "provider").values()
    assert provider["subscription_id"] == "${var.subscription_id}"


def test_expected_resources(resources):
    kinds = {kind for kind, _ in resources}
    assert {
        "azurerm_resource_group",
        "azurerm_container_registry",
        "azurerm_key_vault",
        "azurerm_storage_account",
        "azurerm_storage_container",
        "azurerm_storage_management_policy",
        "azurerm_user_assigned_identity",
        "azurerm_role_assignment",
        "azurerm_role_definition",
    } <= kinds


def test_every_variable_has_a_type_and_description(config):
    variables = _blocks(config, "variable")
    assert variables
    for name, body in variables.items():
        assert body.get("type"), name
        assert body.get("description"), name


def test_outputs_have_the_names_the_pool_reads_and_descriptions(config):
    outputs = _blocks(config, "output")
    assert set(outputs) == OUTPUTS
    for name, body in outputs.items():
        assert body.get("description"), name
    # A disabled worker identity is an empty string, not a missing output.
    assert outputs["worker_identity_id"]["value"].endswith(': ""}')
    assert outputs["worker_identity_client_id"]["value"].endswith(': ""}')
    secret_defaults = {
        name: _blocks(config, "variable")[name]["default"]
        for name in ("public_id_secret", "secret_key_secret")
    }
    assert secret_defaults == {
        "public_id_secret": "numerai-public-id",
        "secret_key_secret": "numerai-secret-key",
    }


def test_the_configuration_is_package_data():
    from infra.azure.settings import CONFIG_DIR, AzureSettings

    # The CLI finds the configuration beside its code, as an installed package would.
    assert AZURE.resolve() == CONFIG_DIR
    assert AzureSettings(_env_file=None).config_dir == CONFIG_DIR
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= {
        p.name for p in CONFIG_DIR.glob("*.tf")
    }
    pyproject = (ROOT / "pyproject.toml").read_text()
    # hatch ships every file of a listed package, the *.tf beside the modules among them.
    assert re.search(r'packages = \[[^\]]*"infra"', pyproject)


def test_no_secret_or_key_value_in_terraform(resources, config):
    """The key values go to Key Vault through its API, so they never enter a plan or state."""
    assert not [key for key in resources if key[0] == "azurerm_key_vault_secret"]
    for name, body in _blocks(config, "variable").items():
        assert not body.get("sensitive"), f"variable {name} suggests a secret value in state"
    for name, body in _blocks(config, "output").items():
        assert not body.get("sensitive"), f"output {name} suggests a secret value"


def test_registry_has_no_admin_user(resources):
    registry = resources[("azurerm_container_registry", "images")]
    assert registry["admin_enabled"] is False


def test_storage_is_private_versioned_and_recoverable(resources):
    account = resources[("azurerm_storage_account", "results")]
    assert account["https_traffic_only_enabled"] is True
    assert account["min_tls_version"] == "TLS1_2"
    assert account["allow_nested_items_to_be_public"] is False
    assert account["shared_access_key_enabled"] is False
    blob = account["blob_properties"][0]
    assert blob["versioning_enabled"] is True
    assert blob["delete_retention_policy"][0]["days"] == "${var.delete_retention_days}"
    assert blob["container_delete_retention_policy"][0]["days"] == "${var.delete_retention_days}"
    container = resources[("azurerm_storage_container", "results")]
    assert container["name"] == "results"
    assert container["container_access_type"] == "private"
    # Old versions expire, so versioning does not grow storage without bound.
    policy = resources[("azurerm_storage_management_policy", "results")]
    actions = policy["rule"][0]["actions"][0]
    assert "delete_after_days_since_creation" in actions["version"][0]


def test_key_vault_uses_rbac_and_cannot_be_purged(resources):
    vault = resources[("azurerm_key_vault", "keys")]
    assert vault["enable_rbac_authorization"] is True
    assert vault["purge_protection_enabled"] is True
    assert vault["soft_delete_retention_days"] == "${var.key_vault_retention_days}"
    assert "access_policy" not in vault  # RBAC only: no vault access policies


def test_job_identity_is_least_privilege(resources):
    grants = {
        (body.get("role_definition_name"), body["scope"])
        for body in _assignments(resources).values()
        if body["principal_id"] == JOB
    }
    assert grants == {
        ("AcrPull", "${azurerm_container_registry.images.id}"),
        (
            "Storage Blob Data Contributor",
            "${azurerm_storage_account.results.id}/blobServices/default/containers/"
            "${azurerm_storage_container.results.name}",
        ),
        ("Key Vault Secrets User", "${azurerm_key_vault.keys.id}"),
    }


def test_the_deployer_may_set_secrets_in_the_vault_only(resources):
    deployer = _assignments(resources)["deployer_secrets"]
    assert deployer["principal_id"] == "${data.azurerm_client_config.current.object_id}"
    assert deployer["role_definition_name"] == "Key Vault Secrets Officer"
    assert deployer["scope"] == "${azurerm_key_vault.keys.id}"


def test_worker_identity_is_optional_and_least_privilege(resources, config):
    assert _blocks(config, "variable")["create_worker_identity"]["type"] == "bool"
    worker_resources = {
        (kind, name): body
        for (kind, name), body in resources.items()
        if kind != "azurerm_role_assignment" and "worker" in name
    }
    assert set(worker_resources) == {
        ("azurerm_user_assigned_identity", "worker"),
        ("azurerm_role_definition", "worker"),
    }
    identity = worker_resources[("azurerm_user_assigned_identity", "worker")]
    assert identity["count"] == "${var.create_worker_identity ? 1 : 0}"
    # The role also serves a push pool's service principal (test_push_principal_... below).
    role = resources[("azurerm_role_definition", "worker")]
    assert role["count"] == "${local.worker_role ? 1 : 0}"
    (locals_,) = [item for item in config["locals"] if "worker_role" in item]
    assert locals_["worker_role"] == '${var.create_worker_identity || var.push_principal_id != ""}'

    assert role["scope"] == "${azurerm_resource_group.nodes.id}"
    assert role["assignable_scopes"] == ["${azurerm_resource_group.nodes.id}"]
    assert role["permissions"][0]["actions"] == [
        "Microsoft.ContainerInstance/containerGroups/*",
        "Microsoft.Resources/deployments/*",
    ]
    grants = {
        name: body
        for name, body in _assignments(resources).items()
        if body["principal_id"] == WORKER
    }
    assert {name: body["scope"] for name, body in grants.items()} == {
        "worker_containers": "${azurerm_resource_group.nodes.id}",
        "worker_assigns_job_identity": "${azurerm_user_assigned_identity.job.id}",
    }
    assert grants["worker_containers"]["role_definition_id"] == (
        "${azurerm_role_definition.worker[0].role_definition_resource_id}"
    )
    assert grants["worker_assigns_job_identity"]["role_definition_name"] == (
        "Managed Identity Operator"
    )
    for name, body in grants.items():
        assert body["count"] == "${var.create_worker_identity ? 1 : 0}", name


def test_push_principal_gets_the_worker_grants_and_no_more(resources, config):
    variables = _blocks(config, "variable")
    assert variables["push_pool"]["type"] == "bool" and variables["push_pool"]["default"] is False
    principal = variables["push_principal_id"]
    assert principal["type"] == "string" and principal["default"] == ""
    assert "can(regex(" in principal["validation"][0]["condition"]
    grants = {
        name: body for name, body in _assignments(resources).items() if body["principal_id"] == PUSH
    }
    assert {name: body["scope"] for name, body in grants.items()} == {
        "push_containers": "${azurerm_resource_group.nodes.id}",
        "push_assigns_job_identity": "${azurerm_user_assigned_identity.job.id}",
    }
    assert grants["push_containers"]["role_definition_id"] == (
        "${azurerm_role_definition.worker[0].role_definition_resource_id}"
    )
    assert grants["push_assigns_job_identity"]["role_definition_name"] == (
        "Managed Identity Operator"
    )
    for name, body in grants.items():
        assert body["count"] == PUSH_COUNT, name
        assert body["principal_type"] == "ServicePrincipal", name
    # No application, service principal or secret of it in Terraform: the user makes those.
    assert not [kind for kind, _ in resources if kind.startswith("azuread_")]
    (terraform,) = config["terraform"]
    providers = {name for name in terraform["required_providers"][0] if not name.startswith("__")}
    assert providers == {"azurerm"}


def test_no_broad_role_anywhere(resources):
    for name, body in _assignments(resources).items():
        assert body.get("role_definition_name") not in _BROAD_ROLES, name
        # Never the subscription: every grant names one resource of the stack.
        assert "subscriptions/" not in body["scope"], name
    for (kind, name), body in resources.items():
        if kind == "azurerm_role_definition":
            for permission in body["permissions"]:
                assert "*" not in permission["actions"], name
                assert not any(
                    a.startswith("Microsoft.Authorization/") for a in permission["actions"]
                )


def test_checkov_skips_are_justified():
    for path in AZURE.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"checkov:skip=CKV2?_\w+:\s*\S", line), f"{path.name}: {line}"


def _checkov() -> str:
    found = shutil.which("checkov") or str(Path.home() / ".local" / "bin" / "checkov")
    if not os.access(found, os.X_OK):
        pytest.skip(
            "checkov not installed; install it in its own venv with `uv tool install checkov` "
            "(next to prefect it downgrades botocore)"
        )
    return found


def test_checkov_azure_terraform():
    env = {key: value for key, value in os.environ.items() if not key.startswith("BC_")}
    result = subprocess.run(
        [
            _checkov(),
            "-d",
            str(AZURE),
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout
