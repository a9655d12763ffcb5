"""The Azure place: Terraform under the home, keys in Key Vault only, block, pool, doctor, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from deployments.cli.infra_azure import app
from flows.errors import NodeError
from infra.azure import place as azure
from infra.azure.doctor import doctor_checks
from infra.azure.errors import (
    AzureSettingsError,
    AzureStackError,
    AzureUnreachable,
    TerraformConfigMissing,
    TerraformFailed,
    TerraformMissing,
)
from infra.azure.pool import IMAGE_VARIABLE, POOL_TYPE, stack_pool_template
from infra.azure.secrets import KeyVault
from infra.azure.settings import CONFIG_DIR, PUSH_ENV, AzureSettings
from infra.azure.terraform import Terraform
from infra.cloud import KeysMissing, NumeraiKeys, PlaceStatus
from infra.places import PLACES, place_checks
from infra.pools import read_pool_template, upsert_pool
from tests.infra.azure.entra_jwt import JwtEntraFake
from tests.infra.azure.vault_fake import RecoverableKeyVaultFake
from tests.integration.azure_fakes import IDENTITY_PATH, LOGIN_HOST
from tests.integration.servers import UvicornThread
from tests.integration.tls_proxy import InterceptingProxy

PUBLIC_ID = "PUBLICID7Q3XK2"
SECRET_KEY = "SECRETKEY9ZP4WM8"
_KEYS = NumeraiKeys(SecretStr(PUBLIC_ID), SecretStr(SECRET_KEY))
TENANT = "72f988bf-0000-4000-8000-00000000a2e1"
SUBSCRIPTION = "6b0c2a51-0000-4000-8000-0000000000a1"
DEPLOYER = "3c1e7f10-0000-4000-8000-00000000d3b1"  # whoever runs `up`, as a managed identity
VAULT = "numerai-nodes-1a2b3c4d"
GROUP = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/numerai-nodes"
IDENTITIES = f"{GROUP}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
OUTPUTS = {
    "subscription_id": SUBSCRIPTION,
    "resource_group": "numerai-nodes",
    "location": "westeurope",
    "registry_name": "numerainodes1a2b3c4d",
    "registry_login_server": "numerainodes1a2b3c4d.azurecr.io",
    "storage_account": "numerainodes1a2b3c4d",
    "results_container": "results",
    "blob_endpoint": "https://numerainodes1a2b3c4d.blob.core.windows.net/",
    "key_vault_name": VAULT,
    "key_vault_uri": f"https://{VAULT}.vault.azure.net/",
    "public_id_secret": "numerai-public-id",
    "secret_key_secret": "numerai-secret-key",
    "job_identity_id": f"{IDENTITIES}/numerai-nodes-job",
    "job_identity_client_id": "0f5c2d3e-0000-4000-8000-00000000j0b1",
    "worker_identity_id": f"{IDENTITIES}/numerai-nodes-worker",
    "worker_identity_client_id": "5a6b7c8d-0000-4000-8000-0000000w0rk1",
}
ACCOUNT_ID = f"{GROUP}/providers/Microsoft.Storage/storageAccounts/{OUTPUTS['storage_account']}"
KEY_NAMES = (
    "NUMERAI_PUBLIC_ID",
    "NUMERAI_SECRET_KEY",
    "NUMERAI_NODES_PUBLIC_ID",
    "NUMERAI_NODES_SECRET_KEY",
)

# A stand-in for the Terraform CLI. It logs its argv, cwd and which key variables reached its
# environment, keeps local state in its working directory as terraform does, and keeps the
# "cloud" (which resource groups and storage accounts exist) beside itself, so what `down` kept
# outlives `destroy`. KEPT are the addresses `down` may keep; their Azure IDs are in IDS.
_FAKE_TERRAFORM = """\
import json, os, sys
from pathlib import Path
here = Path(__file__).parent
args = sys.argv[1:]
keys = [k for k in KEY_NAMES if k in os.environ]
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({"argv": args, "cwd": os.getcwd(), "keys_in_env": keys}) + "\\n")
state = Path("terraform.tfstate")
cloud_file = here / "cloud.json"
cloud = json.loads(cloud_file.read_text()) if cloud_file.exists() else []
current = json.loads(state.read_text()) if state.exists() else None


def fail(message):
    print("Error: " + message, flush=True)
    sys.exit(1)


def save():
    state.write_text(json.dumps(current))
    cloud_file.write_text(json.dumps(cloud))


variables = dict(a[len("-var="):].split("=", 1) for a in args if a.startswith("-var="))
if os.environ.get("FAKE_TERRAFORM_FAIL") == args[0]:
    fail("authorization.RoleAssignmentsClient#Create: Status=403 Code=AuthorizationFailed")
if args[0] in ("init", "apply", "destroy", "import") and not list(Path().glob("*.tf")):
    fail("No configuration files")
if args[0] in ("apply", "destroy", "import") and variables.get("subscription_id") != SUBSCRIPTION:
    fail("subscription_id is not the test subscription")
if args[0] == "init":
    Path(".terraform").mkdir(exist_ok=True)
    print("Initializing provider plugins...")
    print("Terraform has been successfully initialized!")
elif args[0] == "apply":
    current = current or {"managed": []}
    current["outputs"] = {**OUTPUTS, "push_pool": variables.get("push_pool", "false"),
                          "push_principal_id": variables.get("push_principal_id", "")}
    print("azurerm_storage_account.results: Creating...")
    for address in KEPT:
        if address in current["managed"]:
            continue
        if IDS[address] in cloud:
            fail("A resource with the ID \\"" + IDS[address] + "\\" already exists - to be "
                 "managed via Terraform this resource needs to be imported into the State.")
        cloud.append(IDS[address])
        current["managed"].append(address)
    save()
    print("Apply complete! Resources: 21 added, 0 changed, 0 destroyed.")
elif args[0] == "import":
    address, resource_id = args[-2:]
    if IDS.get(address) != resource_id or resource_id not in cloud:
        fail("Cannot import non-existent remote object")
    current = current or {"outputs": {}, "managed": []}
    if address in current["managed"]:
        fail("Resource already managed by Terraform")
    current["managed"].append(address)
    save()
    print("Import successful!")
elif args[0] == "state" and args[1] == "rm":
    for address in args[2:]:
        if not (current and address in current["managed"]):
            fail("Invalid target address")
        current["managed"].remove(address)
    save()
    print("Successfully removed %d resource instance(s)." % len(args[2:]))
elif args[0] == "destroy":
    for address in (current or {}).get("managed", []):
        cloud.remove(IDS[address])
    current = {"outputs": {}, "managed": []}
    save()
    print("Destroy complete! Resources: 21 destroyed.")
elif args[0] == "output":
    if not (current and current.get("outputs")):
        print("Warning: No outputs found", file=sys.stderr)
        print("{}")
    else:
        print(json.dumps({k: {"sensitive": False, "type": "string", "value": v}
                          for k, v in current["outputs"].items()}))
"""
KEPT_IDS = dict(
    zip(
        azure.KEPT_ADDRESSES,
        (
            GROUP,
            ACCOUNT_ID,
            f"{ACCOUNT_ID}/blobServices/default/containers/results",
            f"{ACCOUNT_ID}/managementPolicies/default",
        ),
        strict=True,
    )
)


@pytest.fixture
def fake_terraform(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "terraform"
    script.write_text(
        f"#!{sys.executable}\nOUTPUTS = {OUTPUTS!r}\nKEY_NAMES = {(*KEY_NAMES, PUSH_ENV[2])!r}\n"
        f"SUBSCRIPTION = {SUBSCRIPTION!r}\nKEPT = {azure.KEPT_ADDRESSES!r}\nIDS = {KEPT_IDS!r}\n"
        + _FAKE_TERRAFORM
    )
    script.chmod(0o755)
    return script


def _calls(fake_terraform: Path) -> list[dict]:
    log = fake_terraform.parent / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _commands(fake_terraform: Path) -> list[str]:
    return [
        " ".join(call["argv"][:2] if call["argv"][0] == "state" else call["argv"][:1])
        for call in _calls(fake_terraform)
    ]


def _cloud(fake_terraform: Path) -> list[str]:
    """The Azure resource IDs that exist in the fake's cloud (of those `down` may keep)."""
    found = fake_terraform.parent / "cloud.json"
    return json.loads(found.read_text()) if found.exists() else []


# --- Azure on loopback: Entra ID (the managed identity endpoint) and Key Vault ----------------


@dataclass
class AzureNet:
    entra: JwtEntraFake
    vault: RecoverableKeyVaultFake
    env: dict[str, str]  # what routes azure-identity and Key Vault's client to the fakes


@pytest.fixture(scope="module")
def azure_net(tmp_path_factory) -> Iterator[AzureNet]:
    entra = JwtEntraFake(TENANT)
    vault = RecoverableKeyVaultFake(VAULT, entra, readers=[DEPLOYER], writers=[DEPLOYER])
    with UvicornThread(entra.app) as entra_api, UvicornThread(vault.app) as vault_api:
        routes = {LOGIN_HOST: entra_api.port, vault.host: vault_api.port}
        with InterceptingProxy(routes, tmp_path_factory.mktemp("tls")) as proxy:
            env = {
                "HTTPS_PROXY": proxy.url,
                "NO_PROXY": "127.0.0.1,localhost",
                "REQUESTS_CA_BUNDLE": str(proxy.ca_path),
                # DefaultAzureCredential picks the managed identity, as on an Azure machine.
                "IDENTITY_ENDPOINT": f"{entra_api.url}{IDENTITY_PATH}",
                "IDENTITY_HEADER": entra.grant_identities([DEPLOYER]),
            }
            yield AzureNet(entra, vault, env)


@pytest.fixture
def azure_env(azure_net, tmp_path, monkeypatch) -> AzureNet:
    """A fresh vault, and Azure credentials that reach the fakes only."""
    azure_net.vault.secrets.clear()
    azure_net.vault.deleted.clear()
    azure_net.vault.recovered.clear()
    azure_net.vault.writers = {DEPLOYER}
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "MSI_ENDPOINT",
        "ARM_SUBSCRIPTION_ID",
        "AZURE_SUBSCRIPTION_ID",
        *PUSH_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "azure-cli"))  # not logged in
    for name, value in azure_net.env.items():
        monkeypatch.setenv(name, value)
    return azure_net


def _stored(vault: RecoverableKeyVaultFake) -> dict[str, list[str]]:
    return {name: [v.value for v in versions] for name, versions in vault.secrets.items()}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """The project's working directory (NUMERAI_NODES_HOME), where Terraform must keep its state."""
    path = tmp_path / "home"
    monkeypatch.setenv("NUMERAI_NODES_HOME", str(path))
    return path


@pytest.fixture
def settings(tmp_path, home, fake_terraform, azure_env, monkeypatch) -> AzureSettings:
    # The keys sit in the environment, as for `infra azure up`: Terraform must not inherit them,
    # under their names or their aliases.
    for name, value in zip(KEY_NAMES, [PUBLIC_ID, SECRET_KEY] * 2, strict=True):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FAKE_TERRAFORM_FAIL", raising=False)
    return AzureSettings(
        subscription_id=SUBSCRIPTION,
        location="westeurope",
        terraform=str(fake_terraform),
        pool_name=f"azure-{tmp_path.name[-12:]}".lower(),
        # Blocks outlive a test on the shared Prefect server: each test has its own.
        push_credentials_block=f"aci-push-{tmp_path.name[-12:]}".lower().replace("_", "-"),
        rbac_wait_seconds=0,
        _env_file=None,
    )


def _state_dir(home: Path) -> Path:
    return (home / "infra" / "azure").resolve()


def _defaults(template: dict) -> dict:
    return {name: var.get("default") for name, var in template["variables"]["properties"].items()}


# --- the place ------------------------------------------------------------------------------


def test_azure_is_a_place_with_its_pool_and_setup_command():
    (place,) = [p for p in PLACES if p.name == "azure"]
    assert place.owns("azure-container-instance") and place.package == "infra.azure"
    assert place_checks.setup_command("azure") == "numerai-nodes infra azure up"
    assert POOL_TYPE == "azure-container-instance"


# --- terraform ------------------------------------------------------------------------------


def test_terraform_runs_and_keeps_its_state_under_the_home(settings, home, fake_terraform):
    before = {path.name for path in CONFIG_DIR.iterdir()}
    terraform = Terraform(settings)
    assert terraform.work_dir == _state_dir(home)
    assert terraform.outputs() == {}  # no state yet, and nothing created for asking
    assert not terraform.work_dir.exists()
    terraform.init()
    terraform.apply({"subscription_id": SUBSCRIPTION, "location": "westeurope"})

    work_dir = _state_dir(home)
    assert {call["cwd"] for call in _calls(fake_terraform)} == {str(work_dir)}
    assert (work_dir / "terraform.tfstate").is_file() and (work_dir / ".terraform").is_dir()
    # The package's configuration was copied, not run in place: the sources stay untouched.
    assert {path.name for path in work_dir.glob("*.tf")} == {
        path.name for path in CONFIG_DIR.glob("*.tf")
    }
    assert (work_dir / "identity.tf").read_text() == (CONFIG_DIR / "identity.tf").read_text()
    assert {path.name for path in CONFIG_DIR.iterdir()} == before
    assert terraform.outputs()["key_vault_uri"] == OUTPUTS["key_vault_uri"]


def test_terraform_copies_the_configuration_it_is_given(settings, home, tmp_path):
    config = tmp_path / "my-config"
    config.mkdir()
    (config / "main.tf").write_text('variable "subscription_id" {}\n')
    stale = _state_dir(home) / "old.tf"
    stale.parent.mkdir(parents=True)
    stale.write_text("# from an older configuration\n")
    Terraform(settings.model_copy(update={"config_dir": config})).init()
    assert sorted(path.name for path in _state_dir(home).glob("*.tf")) == ["main.tf"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TerraformConfigMissing, match="NUMERAI_NODES_AZURE_CONFIG_DIR"):
        Terraform(settings.model_copy(update={"config_dir": empty})).init()


def test_terraform_refuses_to_keep_state_in_its_configuration(settings, monkeypatch):
    # A home whose infra/azure is the package itself would put the state into the sources.
    monkeypatch.setenv("NUMERAI_NODES_HOME", str(CONFIG_DIR.parents[1]))
    with pytest.raises(AzureSettingsError, match="NUMERAI_NODES_HOME") as caught:
        Terraform(settings).init()
    assert isinstance(caught.value, ValueError)


def test_missing_terraform_is_a_clear_error(settings, prefect_server):
    settings = settings.model_copy(update={"terraform": "no-such-terraform-binary"})
    with pytest.raises(TerraformMissing) as caught:
        azure.up(settings, _KEYS)
    message = str(caught.value)
    assert "Install Terraform" in message and "NUMERAI_NODES_AZURE_TERRAFORM" in message
    assert "numerai-nodes infra azure up" in message
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, NodeError)


def test_failing_terraform_names_the_cause_and_keeps_keys_out(
    settings, monkeypatch, prefect_server, azure_env
):
    monkeypatch.setenv("FAKE_TERRAFORM_FAIL", "apply")
    lines: list[str] = []
    with pytest.raises(TerraformFailed) as caught:
        azure.up(settings, _KEYS, lines.append)
    message = str(caught.value)
    assert "`terraform apply` failed with exit code 1" in message
    assert "Code=AuthorizationFailed" in message
    assert "numerai-nodes infra azure up" in message
    assert PUBLIC_ID not in message and SECRET_KEY not in message
    assert caught.value.__cause__ is None
    assert azure_env.vault.secrets == {}  # nothing stored for a stack that failed


def test_a_missing_subscription_says_where_to_find_it(settings, prefect_server, fake_terraform):
    with pytest.raises(AzureSettingsError) as caught:
        azure.up(settings.model_copy(update={"subscription_id": None}), None)
    message = str(caught.value)
    assert "--subscription" in message and "NUMERAI_NODES_AZURE_SUBSCRIPTION_ID" in message
    assert "az account show" in message
    assert _commands(fake_terraform) == ["init", "output"]  # nothing applied


def test_the_subscription_comes_from_the_azure_cli_login(
    settings, azure_env, prefect_server, fake_terraform, tmp_path
):
    profile = tmp_path / "azure-cli" / "azureProfile.json"
    profile.parent.mkdir(parents=True)
    subscriptions = [{"id": "other", "isDefault": False}, {"id": SUBSCRIPTION, "isDefault": True}]
    # The Azure CLI writes its profile with a byte-order mark.
    profile.write_text(json.dumps({"subscriptions": subscriptions}), encoding="utf-8-sig")
    azure.up(settings.model_copy(update={"subscription_id": None}), None)
    apply = next(call["argv"] for call in _calls(fake_terraform) if call["argv"][0] == "apply")
    assert f"-var=subscription_id={SUBSCRIPTION}" in apply


# --- up, down, status -----------------------------------------------------------------------


def test_up_applies_stores_keys_and_creates_the_pool(
    settings, home, fake_terraform, azure_env, prefect_server
):
    from prefect.variables import Variable
    from prefect_azure.blob_storage import AzureBlobStorageContainer

    lines: list[str] = []
    info = azure.up(settings, _KEYS, lines.append)

    calls = _calls(fake_terraform)
    commands = [call["argv"][0] for call in calls]
    assert commands.index("init") < commands.index("apply") < len(commands) - 1
    assert commands[-1] == "output"
    apply = calls[commands.index("apply")]["argv"]
    assert "-auto-approve" in apply
    assert f"-var=subscription_id={SUBSCRIPTION}" in apply
    assert "-var=location=westeurope" in apply and "-var=resource_group=numerai-nodes" in apply
    assert "-var=create_worker_identity=true" in apply
    assert all(call["cwd"] == str(_state_dir(home)) for call in calls)
    # The keys reached neither Terraform's environment, nor its argv, nor its state.
    assert all(call["keys_in_env"] == [] for call in calls)
    state = "".join(path.read_text() for path in _state_dir(home).glob("*.tfstate"))
    everything = json.dumps(calls) + "\n".join(lines) + json.dumps(info.to_json()) + state
    assert PUBLIC_ID not in everything and SECRET_KEY not in everything
    assert "Apply complete! Resources: 21 added, 0 changed, 0 destroyed." in lines

    # They went to Key Vault, as the deployer's identity.
    assert _stored(azure_env.vault) == {
        "numerai-public-id": [PUBLIC_ID],
        "numerai-secret-key": [SECRET_KEY],
    }
    assert {token.principal for token in azure_env.entra.issued} == {DEPLOYER}
    assert info.keys_stored and info.pool_created

    template = read_pool_template(settings.pool_name)
    assert template == stack_pool_template(OUTPUTS, settings)
    image = f"{OUTPUTS['registry_login_server']}/numerai-nodes:latest"
    assert info.image == image and _defaults(template)["image"] == image
    assert PUBLIC_ID not in json.dumps(template) and SECRET_KEY not in json.dumps(template)
    block = AzureBlobStorageContainer.load(settings.results_block)
    assert block.container_name == "results"
    # Only the account URL: the containers reach it as their managed identity.
    assert block.credentials.account_url == OUTPUTS["blob_endpoint"]
    assert block.credentials.connection_string is None
    assert block.credentials.client_secret is None
    assert Variable.get(IMAGE_VARIABLE) == f"{OUTPUTS['registry_login_server']}/numerai-nodes"

    # A second run updates the pool in place; without keys the secrets stay as they are.
    again = azure.up(settings, None)
    assert not again.pool_created and not again.keys_stored
    assert _stored(azure_env.vault)["numerai-public-id"] == [PUBLIC_ID]

    # doctor: the stack, the pool and the secrets, through the same fakes.
    checks = {check.name: check for check in doctor_checks(settings.pool_name, settings=settings)}
    assert checks["Azure credentials"].status == "ok"
    assert "managed identity" in checks["Azure credentials"].detail
    assert checks["Terraform state"].status == "ok"
    assert checks[f"Work pool {settings.pool_name}"].status == "ok"
    assert checks["Secret numerai-public-id"].status == "ok", checks["Secret numerai-public-id"]
    assert checks["Secret numerai-secret-key"].status == "ok"
    shown = json.dumps([check.to_json() for check in checks.values()])
    assert PUBLIC_ID not in shown and SECRET_KEY not in shown

    done = azure.down(settings)
    assert _commands(fake_terraform)[-3:] == ["init", "state rm", "destroy"]
    assert "deleted the key secrets numerai-public-id, numerai-secret-key" in done
    assert azure_env.vault.secrets == {} and set(azure_env.vault.deleted) == {
        "numerai-public-id",
        "numerai-secret-key",
    }
    assert any(f"kept storage account {OUTPUTS['storage_account']}" in line for line in done)
    assert f"deleted work pool {settings.pool_name}" in done
    assert read_pool_template(settings.pool_name) is None
    assert azure.down(settings)[0].startswith("no Azure stack is applied")


def test_down_keeps_the_storage_and_the_next_up_adopts_it(
    settings, fake_terraform, azure_env, prefect_server
):
    azure.up(settings, _KEYS)
    done = azure.down(settings)
    assert any("`down --delete-storage` deletes it" in line for line in done)
    rm = next(
        call["argv"] for call in _calls(fake_terraform) if call["argv"][:2] == ["state", "rm"]
    )
    assert rm[2:] == list(azure.KEPT_ADDRESSES)
    assert set(_cloud(fake_terraform)) == set(KEPT_IDS.values())  # the models are still there
    assert azure.status(settings).exists is False
    note = azure.down(settings)
    assert any("kept by an earlier `down`" in line and "az group delete" in line for line in note)

    # Without adoption, `apply` would fail: the group and account exist outside the state.
    again = azure.up(settings, _KEYS)
    imports = [call["argv"][-2:] for call in _calls(fake_terraform) if call["argv"][0] == "import"]
    assert dict(imports) == KEPT_IDS
    assert again.outputs["storage_account"] == OUTPUTS["storage_account"]
    assert azure.status(settings).exists is True
    # The vault kept the deleted secrets (purge protection): `up` recovered, then set them.
    assert sorted(azure_env.vault.recovered) == ["numerai-public-id", "numerai-secret-key"]
    assert _stored(azure_env.vault)["numerai-secret-key"] == [SECRET_KEY, SECRET_KEY]


def test_down_with_delete_storage_deletes_the_account_and_its_models(
    settings, fake_terraform, prefect_server
):
    azure.up(settings, None)
    done = azure.down(settings, delete_storage=True)
    calls = [call["argv"] for call in _calls(fake_terraform)]
    assert calls[-1][0] == "destroy"
    assert not any(call[0] == "state" for call in calls)
    assert _cloud(fake_terraform) == []
    assert f"deleted storage account {OUTPUTS['storage_account']} and the models in it" in done


def test_status_has_the_shape_of_every_place(settings, prefect_server):
    missing = azure.status(settings)
    assert missing.place == "azure" and missing.exists is False
    assert missing.problems and "no Azure stack is applied" in missing.problems[0]

    azure.up(settings, None)
    found = azure.status(settings)
    assert set(found.to_json()) == {field.name for field in fields(PlaceStatus)}
    assert found.exists and found.pool_exists and found.pool_matches, found.problems
    assert found.outputs["key_vault_uri"] == OUTPUTS["key_vault_uri"]
    assert found.problems == ()

    # A pool that drifted from the stack is named, variable by variable.
    template = read_pool_template(settings.pool_name)
    template["variables"]["properties"]["resource_group_name"]["default"] = "elsewhere"
    upsert_pool(settings.pool_name, POOL_TYPE, template)
    drifted = azure.status(settings)
    assert not drifted.pool_matches
    assert drifted.problems == (
        f"work pool {settings.pool_name}: resource_group_name is 'elsewhere', the stack has "
        "'numerai-nodes'",
    )


def test_doctor_names_the_fix_for_every_failure(
    settings, home, azure_env, prefect_server, monkeypatch
):
    # No credentials anywhere, no stack.
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    monkeypatch.delenv("IDENTITY_HEADER")
    checks = doctor_checks(settings.pool_name, settings=settings)
    assert [(check.name, check.status) for check in checks] == [
        ("Azure credentials", "fail"),
        ("Terraform state", "fail"),
    ]
    assert "az login" in checks[0].fix and "numerai-nodes infra azure up" in checks[1].fix

    # A stack without its pool; the secrets are not asked for without credentials.
    _state_dir(home).mkdir(parents=True)
    (_state_dir(home) / "terraform.tfstate").write_text(json.dumps({"outputs": OUTPUTS}))
    checks = doctor_checks(settings.pool_name, settings=settings)
    assert {check.name: check.status for check in checks} == {
        "Azure credentials": "fail",
        "Terraform state": "ok",
        f"Work pool {settings.pool_name}": "fail",
        "Secret numerai-public-id": "warn",
        "Secret numerai-secret-key": "warn",
    }

    # With credentials: a secret missing, and one that holds only a placeholder.
    for name, value in azure_env.env.items():
        monkeypatch.setenv(name, value)
    with KeyVault(OUTPUTS["key_vault_uri"]) as vault:
        vault.put("numerai-secret-key", SecretStr(" "))
    checks = doctor_checks(settings.pool_name, settings=settings)
    failed = {check.name: check for check in checks if check.status == "fail"}
    assert set(failed) == {
        f"Work pool {settings.pool_name}",
        "Secret numerai-public-id",
        "Secret numerai-secret-key",
    }
    assert "does not exist" in failed["Secret numerai-public-id"].detail
    assert "placeholder" in failed["Secret numerai-secret-key"].detail
    assert all("numerai-nodes infra azure up" in check.fix for check in failed.values())
    assert SECRET_KEY not in json.dumps([check.to_json() for check in checks])

    # Credentials that are there but do not work: the managed identity refuses this machine.
    monkeypatch.setenv("IDENTITY_HEADER", "not-this-machine")
    checks = doctor_checks(settings.pool_name, settings=settings)
    found = {check.name: check for check in checks}
    assert found["Azure credentials"].status == "fail"
    assert "ClientAuthenticationError" in found["Azure credentials"].detail
    assert "az login" in found["Azure credentials"].fix
    assert found["Secret numerai-public-id"].status == "warn"


def test_key_vault_refusal_names_the_role_and_keeps_the_value_out(azure_env):
    azure_env.vault.writers = set()
    vault = KeyVault(OUTPUTS["key_vault_uri"])
    with vault, pytest.raises(AzureStackError) as caught:
        vault.put("numerai-secret-key", SecretStr(SECRET_KEY))
    message = str(caught.value)
    assert "403 Forbidden" in message and "Key Vault Secrets Officer" in message
    assert "numerai-nodes infra azure up" in message and SECRET_KEY not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_key_vault_waits_for_a_new_role_then_gives_up(azure_env):
    azure_env.vault.writers = set()
    lines: list[str] = []
    vault = KeyVault(OUTPUTS["key_vault_uri"], rbac_wait_seconds=0.3, progress=lines.append)
    with vault, pytest.raises(AzureStackError, match="Key Vault Secrets Officer"):
        vault.put("numerai-public-id", SecretStr(PUBLIC_ID))
    assert lines and all("role may still be spreading" in line for line in lines)
    assert PUBLIC_ID not in "".join(lines)


def test_an_unreachable_key_vault_is_a_transient_error(azure_env):
    # The proxy answers only for the fakes' hosts: this vault is nowhere.
    vault = KeyVault("https://no-such-vault.vault.azure.net/", retry_total=0)
    with vault, pytest.raises(AzureUnreachable, match="Could not reach Key Vault") as caught:
        vault.put("numerai-secret-key", SecretStr(SECRET_KEY))
    assert caught.value.transient and isinstance(caught.value, ConnectionError)
    assert SECRET_KEY not in str(caught.value)


def test_up_with_prefect_unreachable_fails_before_terraform(settings, fake_terraform):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        pytest.raises(NodeError, match=r"Prefect API at http://127\.0\.0\.1:9/api does not answer"),
    ):
        azure.up(settings, None)
    assert _calls(fake_terraform) == []


# --- push pools on Prefect Cloud ------------------------------------------------------------

PUSH_APP = "8d7e6f50-0000-4000-8000-0000000a99b1"  # the appId `az ad sp create-for-rbac` prints
PUSH_OBJECT = "e1f2a3b4-0000-4000-8000-0000000b7c01"  # its service principal's object id
PUSH_SECRET = "Zq8~pushSecretValue.NeverShown_0123"


def _text(result) -> str:
    return " ".join(result.output.split())


def _applies(fake_terraform: Path) -> list[list[str]]:
    return [call["argv"] for call in _calls(fake_terraform) if call["argv"][0] == "apply"]


@pytest.fixture
def cloud(prefect_server):
    from tests.infra.aws.prefect_cloud import cloud_shaped_api

    with cloud_shaped_api(prefect_server) as url:
        yield url


@pytest.fixture
def push_settings(settings, azure_env) -> AzureSettings:
    """The service principal exists in Entra ID; the settings give its appId, tenant, secret."""
    azure_env.entra.add_service_principal(PUSH_APP, PUSH_SECRET, PUSH_OBJECT)
    return settings.model_copy(
        update={
            "push_client_id": PUSH_APP,
            "push_tenant_id": TENANT,
            "push_client_secret": SecretStr(PUSH_SECRET),
        }
    )


def test_cli_up_push_makes_an_aci_push_pool_on_prefect_cloud(
    settings, cli_env, cloud, azure_env, fake_terraform, home, monkeypatch
):
    import asyncio

    from prefect import get_client
    from prefect_azure import AzureContainerInstanceCredentials
    from prefect_azure.workers.container_instance import AzureContainerWorker

    from infra.azure.pool import ACI_PUSH
    from infra.pools import PushCredentialsMissing, default_template, read_pool_type

    runner = CliRunner()
    pool = settings.pool_name
    # On Prefect Cloud without --push: a hybrid pool, and how to choose push.
    result = runner.invoke(app, ["up"])
    assert result.exit_code == 0, result.output
    assert read_pool_type(pool) == POOL_TYPE
    assert "azure-container-instance:push" in _text(result)
    assert f"prefect work-pool delete {pool}" in _text(result)
    assert "-var=push_pool=false" in _applies(fake_terraform)[-1]
    assert "-var=push_principal_id=" in _applies(fake_terraform)[-1]

    # The hybrid pool's type cannot flip in place: refused before anything is applied.
    result = runner.invoke(app, ["up", "--push"])
    assert result.exit_code == 1 and "A pool's type cannot change" in str(result.exception)
    assert len(_applies(fake_terraform)) == 1
    assert runner.invoke(app, ["down", "--yes"]).exit_code == 0

    # --push without a service principal (no terminal to ask in): how to make one, nothing applied.
    result = runner.invoke(app, ["up", "--push"])
    assert result.exit_code == 1 and isinstance(result.exception, PushCredentialsMissing)
    message = str(result.exception)
    assert "az ad sp create-for-rbac --name numerai-nodes-push" in message
    assert all(name in message for name in PUSH_ENV)
    assert len(_applies(fake_terraform)) == 1

    # A wrong secret fails at sign-in, before Terraform, and the message does not show it.
    azure_env.entra.add_service_principal(PUSH_APP, PUSH_SECRET, PUSH_OBJECT)
    for name, value in zip(PUSH_ENV, (PUSH_APP, TENANT, "not-the-secret"), strict=True):
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["up", "--push"])
    assert result.exit_code == 1 and isinstance(result.exception, AzureSettingsError)
    assert "AADSTS7000215" in str(result.exception) and PUSH_APP in str(result.exception)
    assert "not-the-secret" not in str(result.exception) + result.output
    assert len(_applies(fake_terraform)) == 1

    # Only two of the three parts: the missing one is named.
    monkeypatch.delenv(PUSH_ENV[1])
    result = runner.invoke(app, ["up", "--push"])
    assert result.exit_code == 1 and PUSH_ENV[1] in str(result.exception)

    # The service principal's appId, tenant and secret: signed in, granted, stored in the block.
    monkeypatch.setenv(PUSH_ENV[1], TENANT)
    monkeypatch.setenv(PUSH_ENV[2], PUSH_SECRET)
    result = runner.invoke(app, ["up", "--push"])
    assert result.exit_code == 0, result.output
    assert read_pool_type(pool) == "azure-container-instance:push"
    assert "no worker to run" in _text(result)
    apply = _applies(fake_terraform)[-1]
    assert "-var=push_pool=true" in apply
    # The stack grants the worker role to the object id Entra ID named, not to the appId.
    assert f"-var=push_principal_id={PUSH_OBJECT}" in apply
    assert "unused" in _text(result) and "--no-worker-identity" in _text(result)
    push_block = settings.push_credentials_block
    block = AzureContainerInstanceCredentials.load(push_block)
    assert (block.client_id, block.tenant_id) == (PUSH_APP, TENANT)
    assert block.client_secret.get_secret_value() == PUSH_SECRET
    template = read_pool_template(pool)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(push_block, ACI_PUSH.block_type)
    assert _defaults(template)["aci_credentials"] == {
        "$ref": {"block_document_id": str(document.id)}
    }
    # The containers still run as the job identity and read the keys from Key Vault.
    assert _defaults(template)["identities"] == [OUTPUTS["job_identity_id"]]
    assert _defaults(template)["env"]["NUMERAI_NODES_KEY_VAULT_URL"] == OUTPUTS["key_vault_uri"]

    # No key or secret in the pool, the output, Terraform's argv, environment or state.
    calls = _calls(fake_terraform)
    state = (_state_dir(home) / "terraform.tfstate").read_text()
    visible = json.dumps(template) + result.output + json.dumps(calls) + state
    for secret in (PUBLIC_ID, SECRET_KEY, PUSH_SECRET):
        assert secret not in visible
    assert all(call["keys_in_env"] == [] for call in calls)

    # The template is one the ACI worker accepts; the block reference resolves to the principal.
    assert set(default_template(POOL_TYPE)["variables"]["properties"]) <= set(_defaults(template))

    async def configuration():
        async with get_client() as client:
            return await AzureContainerWorker.job_configuration.from_template_and_values(
                template, {}, client=client
            )

    config = asyncio.run(configuration())
    assert config.aci_credentials.client_id == PUSH_APP
    assert config.aci_credentials.client_secret.get_secret_value() == PUSH_SECRET
    assert config.subscription_id.get_secret_value() == SUBSCRIPTION
    assert config.resource_group_name == OUTPUTS["resource_group"]
    assert config.identities == [OUTPUTS["job_identity_id"]]
    assert config.image_registry.identity == OUTPUTS["job_identity_id"]

    # A later `up` keeps push and the saved block without the secret.
    monkeypatch.delenv(PUSH_ENV[2])
    result = runner.invoke(app, ["up", "--skip-keys"])
    assert result.exit_code == 0, result.output
    assert read_pool_type(pool) == "azure-container-instance:push"
    assert f"-var=push_principal_id={PUSH_OBJECT}" in _applies(fake_terraform)[-1]

    # doctor: the pool's kind and its block.
    checks = {c.name: c for c in doctor_checks(pool, settings=settings)}
    assert checks["azure-container-instance pool kind"].status == "ok"
    assert checks["azure-container-instance push credentials"].status == "ok"
    assert f"azure-container-instance-credentials/{push_block}" in (
        checks["azure-container-instance push credentials"].detail
    )
    assert checks[f"Work pool {pool}"].status == "ok", checks[f"Work pool {pool}"]
    assert PUSH_SECRET not in json.dumps([c.to_json() for c in checks.values()])
    # A hybrid pool where the stack recorded --push names the fix.
    (check,) = ACI_PUSH.checks(pool, POOL_TYPE, template, recorded=True)
    assert check.status == "fail" and f"prefect work-pool delete {pool}" in check.fix
    assert "infra azure up --push" in check.fix

    result = runner.invoke(app, ["down", "--yes"])
    assert result.exit_code == 0, result.output
    assert read_pool_type(pool) is None
    assert f"deleted block azure-container-instance-credentials/{push_block}" in _text(result)


def test_push_is_refused_off_prefect_cloud(settings, cli_env, fake_terraform, prefect_server):
    from infra.pools import PushNeedsPrefectCloud

    result = CliRunner().invoke(app, ["up", "--push"])
    assert result.exit_code == 1 and isinstance(result.exception, PushNeedsPrefectCloud)
    assert "prefect cloud login" in str(result.exception)
    assert "numerai-nodes infra azure up" in str(result.exception)
    assert _applies(fake_terraform) == []


def test_going_back_to_hybrid_revokes_the_grant_and_deletes_the_block(
    push_settings, cloud, fake_terraform
):
    from prefect import get_client

    from infra.pools import block_id_by_name, read_pool_type

    settings = push_settings
    pushed = azure.up(settings, None, push=True)
    assert pushed.pool_type == "azure-container-instance:push"
    assert pushed.push_block == settings.push_credentials_block and pushed.notes
    assert PUSH_SECRET not in json.dumps(pushed.to_json()) and PUSH_SECRET not in repr(pushed)

    # --no-push refuses to flip the push pool in place, naming the delete.
    with pytest.raises(NodeError, match=r"prefect work-pool delete"):
        azure.up(settings, None, push=False)
    with get_client(sync_client=True) as client:
        client.delete_work_pool(settings.pool_name)
    hybrid = azure.up(settings, None, push=False)
    assert hybrid.pool_type == POOL_TYPE and hybrid.push_block is None
    assert read_pool_type(settings.pool_name) == POOL_TYPE
    apply = _applies(fake_terraform)[-1]
    assert "-var=push_pool=false" in apply and "-var=push_principal_id=" in apply
    block_type = "azure-container-instance-credentials"
    assert block_id_by_name(settings.push_credentials_block, block_type) is None
    # The stack now records hybrid: a later `up` keeps it.
    assert azure.up(settings, None).pool_type == POOL_TYPE


def test_up_push_asks_for_the_principal_in_a_terminal(settings, cloud, azure_env, fake_terraform):
    azure_env.entra.add_service_principal(PUSH_APP, PUSH_SECRET, PUSH_OBJECT)
    answers = {"appId": PUSH_APP, "tenant": TENANT, "password": PUSH_SECRET}
    asked: list[str] = []

    def ask(label: str) -> str:
        asked.append(label)
        return next(value for word, value in answers.items() if label.startswith(word))

    info = azure.up(settings, None, push=True, ask=ask)
    assert info.pool_type == "azure-container-instance:push" and len(asked) == 3
    assert "az ad sp create-for-rbac" in asked[0]
    # The block exists now: the next `up` asks nothing.
    azure.up(settings, None, ask=ask)
    assert len(asked) == 3


def test_doctor_flags_a_push_pool_the_stack_did_not_record(settings, prefect_server, home):
    from prefect import get_client

    azure.up(settings, None)  # hybrid, recorded so
    template = read_pool_template(settings.pool_name)
    with get_client(sync_client=True) as client:
        client.delete_work_pool(settings.pool_name)
    upsert_pool(settings.pool_name, "azure-container-instance:push", template)
    checks = {c.name: c for c in doctor_checks(settings.pool_name, settings=settings)}
    kind = checks["azure-container-instance pool kind"]
    assert kind.status == "fail" and "without --push" in kind.detail
    assert "numerai-nodes infra azure up --push" in kind.fix


# --- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings, monkeypatch) -> None:
    for name, value in {
        "TERRAFORM": settings.terraform,
        "SUBSCRIPTION_ID": SUBSCRIPTION,
        "LOCATION": "westeurope",
        "POOL_NAME": settings.pool_name,
        "PUSH_CREDENTIALS_BLOCK": settings.push_credentials_block,
        "RBAC_WAIT_SECONDS": "0",
    }.items():
        monkeypatch.setenv(f"NUMERAI_NODES_AZURE_{name}", value)


def test_cli_up_status_down(settings, cli_env, azure_env, fake_terraform, prefect_server):
    runner = CliRunner()

    result = runner.invoke(app, ["up", "--preset", "cpu-s", "--no-worker-identity"])
    assert result.exit_code == 0, result.output
    assert "Created work pool" in result.output
    assert OUTPUTS["key_vault_uri"] in result.output
    assert PUBLIC_ID not in result.output and SECRET_KEY not in result.output
    assert _stored(azure_env.vault)["numerai-secret-key"] == [SECRET_KEY]
    apply = next(call["argv"] for call in _calls(fake_terraform) if call["argv"][0] == "apply")
    assert "-var=create_worker_identity=false" in apply

    result = runner.invoke(app, ["status", "--json", "--pool", settings.pool_name])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert set(status) == {field.name for field in fields(PlaceStatus)}
    assert status["place"] == "azure" and status["exists"] is True
    assert status["outputs"]["storage_account"] == OUTPUTS["storage_account"]
    # `up --preset cpu-s` is not what the settings (gen-m) would write: status says so.
    assert not status["pool_matches"]
    assert any("memory" in problem for problem in status["problems"])

    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert f"work pool {settings.pool_name}: does not match the stack" in result.output

    result = runner.invoke(app, ["down", "--yes"])
    assert result.exit_code == 0, result.output
    assert "kept storage account" in result.output and "--delete-storage" in result.output
    assert read_pool_template(settings.pool_name) is None
    assert set(_cloud(fake_terraform)) == set(KEPT_IDS.values())

    result = runner.invoke(app, ["up", "--skip-keys"])
    assert result.exit_code == 0, result.output
    assert "--skip-keys" in result.output
    assert azure_env.vault.secrets == {}  # deleted by `down`, not set again
    result = runner.invoke(app, ["down", "--yes", "--delete-storage"])
    assert result.exit_code == 0, result.output
    assert f"deleted storage account {OUTPUTS['storage_account']}" in result.output
    assert _cloud(fake_terraform) == []


def test_cli_down_asks_first(settings, cli_env, fake_terraform):
    result = CliRunner().invoke(app, ["down", "--delete-storage"], input="n\n")
    assert result.exit_code == 1
    assert "the storage account with its trained models" in result.output
    assert _calls(fake_terraform) == []


def test_cli_up_reads_the_keys_from_the_settings(
    settings, cli_env, azure_env, prefect_server, tmp_path, monkeypatch
):
    for name in KEY_NAMES:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        f"NUMERAI_PUBLIC_ID={PUBLIC_ID}\nNUMERAI_SECRET_KEY={SECRET_KEY}\n"
    )
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 0, result.output
    assert _stored(azure_env.vault) == {
        "numerai-public-id": [PUBLIC_ID],
        "numerai-secret-key": [SECRET_KEY],
    }


def test_cli_without_keys_outside_a_terminal_says_how_to_give_them(monkeypatch, tmp_path):
    for name in KEY_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 1
    assert isinstance(result.exception, KeysMissing)
    assert "--skip-keys" in str(result.exception)


def test_cli_raises_missing_terraform_for_the_top_level_to_print(
    settings, cli_env, monkeypatch, prefect_server
):
    monkeypatch.setenv("NUMERAI_NODES_AZURE_TERRAFORM", "no-such-terraform-binary")
    result = CliRunner().invoke(app, ["up", "--skip-keys"])
    assert result.exit_code == 1
    assert isinstance(result.exception, TerraformMissing)
    assert "Terraform was not found" in str(result.exception)


@pytest.mark.parametrize("args", [["infra", "azure", "--help"], ["infra", "azure", "up", "--help"]])
def test_the_azure_help_imports_nothing_heavy(args):
    from tests.test_house import HEAVY_FOR_HELP, ROOT

    heavy = {*HEAVY_FOR_HELP, "azure", "prefect_azure"}
    code = (
        "import contextlib, io, sys\n"
        f"sys.argv = ['numerai-nodes', *{args!r}]\n"
        "from deployments.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exc:\n"
        "        code = exc.code\n"
        f"print(code, sorted({heavy!r} & {{m.split('.')[0] for m in sys.modules}}), "
        "'--subscription' in out.getvalue() or 'up' in out.getvalue())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "0 [] True", out.stderr
