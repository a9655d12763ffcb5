"""Numerai keys from Azure Key Vault, read with a managed identity, against loopback fakes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows import key_vault
from flows.key_vault import PUBLIC_ID_SECRET, SECRET_KEY_SECRET, KeyVaultError
from flows.keys import load_keys
from flows.settings import NodesSettings
from tests.integration.azure_fakes import LOGIN_HOST, EntraFake, KeyVaultFake
from tests.integration.servers import UvicornThread
from tests.integration.tls_proxy import InterceptingProxy

TENANT = "00000000-0000-0000-0000-0000000000aa"
NODE_IDENTITY = "11111111-1111-1111-1111-111111111111"  # the job identity: may read secrets
OTHER_IDENTITY = "22222222-2222-2222-2222-222222222222"  # an identity without access
ADMIN = "33333333-3333-3333-3333-333333333333"  # a service principal that stores the keys
ADMIN_SECRET = "admin-client-secret"
PUBLIC_ID = "fake-public-id-from-the-vault"  # a test value, not a key
SECRET_KEY = "fake-secret-key-from-the-vault"  # a test value, not a key
PROJECT = Path(__file__).parents[2]


@dataclass
class Azure:
    entra: EntraFake
    vault: KeyVaultFake
    identity_endpoint: str
    network: dict[str, str]

    def store(self, name: str, value: str) -> None:
        """Store a secret as an operator would: the SDK, signed in as a service principal."""
        from azure.identity import ClientSecretCredential
        from azure.keyvault.secrets import SecretClient

        with (
            ClientSecretCredential(TENANT, ADMIN, ADMIN_SECRET) as credential,
            SecretClient(self.vault.url, credential) as client,
        ):
            client.set_secret(name, value)

    def delete(self, name: str) -> None:
        from azure.identity import ClientSecretCredential
        from azure.keyvault.secrets import SecretClient

        with (
            ClientSecretCredential(TENANT, ADMIN, ADMIN_SECRET) as credential,
            SecretClient(self.vault.url, credential) as client,
        ):
            client.begin_delete_secret(name).wait()


@pytest.fixture(scope="module")
def azure(tmp_path_factory) -> Iterator[Azure]:
    entra = EntraFake(TENANT)
    entra.add_application(ADMIN, ADMIN_SECRET)
    vault = KeyVaultFake("nodes-kv", entra, readers=[NODE_IDENTITY, ADMIN], writers=[ADMIN])
    with UvicornThread(entra.app) as login, UvicornThread(vault.app) as vault_api:
        routes = {LOGIN_HOST: login.port, vault.host: vault_api.port}
        with InterceptingProxy(routes, tmp_path_factory.mktemp("tls")) as proxy:
            network = {
                "HTTPS_PROXY": proxy.url,
                "NO_PROXY": "127.0.0.1,localhost",
                "REQUESTS_CA_BUNDLE": str(proxy.ca_path),
            }
            with pytest.MonkeyPatch.context() as patch:
                for name, value in network.items():
                    patch.setenv(name, value)
                azure = Azure(entra, vault, f"{login.url}/msi/token", network)
                azure.store(PUBLIC_ID_SECRET, PUBLIC_ID)
                azure.store(SECRET_KEY_SECRET, SECRET_KEY)
                yield azure


@pytest.fixture
def node(azure, monkeypatch) -> Iterator[Azure]:
    """This process as a container group holding both identities, using NODE_IDENTITY."""
    header = azure.entra.grant_identities([NODE_IDENTITY, OTHER_IDENTITY])
    monkeypatch.setenv("IDENTITY_ENDPOINT", azure.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", header)
    monkeypatch.setenv("AZURE_CLIENT_ID", NODE_IDENTITY)
    monkeypatch.setenv("NUMERAI_NODES_KEY_VAULT_URL", azure.vault.url)
    for name in ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    key_vault.key_vault_keys.cache_clear()  # each test reads the vault afresh
    yield azure
    key_vault.key_vault_keys.cache_clear()


def test_the_keys_come_from_key_vault_with_the_nodes_managed_identity(node):
    reads_before = len(node.vault.reads)

    assert load_keys(NodesSettings(_env_file=None)) == (PUBLIC_ID, SECRET_KEY)

    reads = node.vault.reads[reads_before:]
    assert reads == [(NODE_IDENTITY, PUBLIC_ID_SECRET), (NODE_IDENTITY, SECRET_KEY_SECRET)]
    assert any(
        t.principal == NODE_IDENTITY and t.grant == "managed_identity" for t in node.entra.issued
    )
    # The tasks of one run each connect: the vault is read once per process.
    assert load_keys(NodesSettings(_env_file=None)) == (PUBLIC_ID, SECRET_KEY)
    assert len(node.vault.reads) == reads_before + 2


def test_keys_in_the_environment_win_over_the_vault(node, monkeypatch):
    monkeypatch.setenv("NUMERAI_PUBLIC_ID", "ENVID")
    monkeypatch.setenv("NUMERAI_SECRET_KEY", "ENVKEY")
    reads_before = len(node.vault.reads)

    assert load_keys(NodesSettings(_env_file=None)) == ("ENVID", "ENVKEY")
    assert len(node.vault.reads) == reads_before


def test_a_missing_secret_names_the_vault_the_secret_and_the_fix(node):
    node.delete(SECRET_KEY_SECRET)
    try:
        with pytest.raises(KeyVaultError) as error:
            load_keys(NodesSettings(_env_file=None))
    finally:
        node.store(SECRET_KEY_SECRET, SECRET_KEY)
    message = str(error.value)
    assert node.vault.url in message and f"'{SECRET_KEY_SECRET}'" in message, message
    assert f"--name {SECRET_KEY_SECRET}" in message, message
    assert PUBLIC_ID not in message and SECRET_KEY not in message
    assert error.value.__context__ is None  # the SDK error (and its connection) is not kept


def test_an_identity_without_access_is_told_which_role_it_needs(node, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_ID", OTHER_IDENTITY)

    with pytest.raises(KeyVaultError, match="Key Vault Secrets User") as error:
        load_keys(NodesSettings(_env_file=None))
    assert f"'{PUBLIC_ID_SECRET}'" in str(error.value) and node.vault.url in str(error.value)


def test_no_usable_identity_says_how_to_give_the_node_one(node, monkeypatch):
    monkeypatch.setenv("IDENTITY_HEADER", "not-a-machine-of-this-tenant")

    with pytest.raises(KeyVaultError, match="AZURE_CLIENT_ID") as error:
        load_keys(NodesSettings(_env_file=None))
    assert "managed identity" in str(error.value) and "az login" in str(error.value)


def test_without_a_vault_setting_no_vault_is_read(node, monkeypatch):
    monkeypatch.delenv("NUMERAI_NODES_KEY_VAULT_URL")
    reads_before = len(node.vault.reads)
    settings = NodesSettings(_env_file=None, public_id_block="absent", secret_key_block="absent")
    assert load_keys(settings) == (None, None)
    assert len(node.vault.reads) == reads_before
