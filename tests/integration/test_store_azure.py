"""The model store on Azure Blob storage, through prefect-azure's AzureBlobStorageContainer block
(an ACI pool's result storage), served by Azurite: missing, saved, listed, newest of a family; as
tests/flows/test_store.py does on files and S3.

The block signs in with Azurite's connection string. The Azure pool's block uses the storage
account's URL and the container's managed identity instead, which Azurite's plain-HTTP endpoint
cannot serve; the block's reads, writes and listings are the same either way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.store import ModelStore, _BlockStorage
from tests.flows.test_store import (
    check_a_rewritten_record_keeps_its_model,
    check_saving_listing_and_loading,
)
from tests.integration.azurite import Azurite

pytestmark = [
    pytest.mark.integration,
    # prefect-azure 0.4.13's block reads with azure-storage-blob's deprecated download_to_stream.
    pytest.mark.filterwarnings("ignore:download_to_stream is deprecated:DeprecationWarning"),
]


@pytest.fixture
def container(azurite: Azurite, tmp_path: Path) -> str:
    name = f"results-{tmp_path.name.replace('_', '-').lower()}"[:63].rstrip("-")
    azurite.create_container(name)
    return name


def _store(azurite: Azurite, container: str, base_folder: str | None = None) -> ModelStore:
    from prefect_azure import AzureBlobStorageCredentials
    from prefect_azure.blob_storage import AzureBlobStorageContainer

    credentials = AzureBlobStorageCredentials(connection_string=azurite.connection_string)
    block = AzureBlobStorageContainer(
        container_name=container, credentials=credentials, base_folder=base_folder
    )
    return ModelStore(_BlockStorage(block, "azure-blob-storage-container/results"))


def test_a_missing_model_is_none_and_a_saved_one_is_found_listed_and_loaded(azurite, container):
    check_saving_listing_and_loading(_store(azurite, container))
    assert any(name.startswith("models/records/") for name in azurite.blob_names(container))


def test_a_record_is_written_after_its_model(azurite, container):
    check_a_rewritten_record_keeps_its_model(_store(azurite, container))


def test_a_base_folder_keeps_the_models_under_it(azurite, container):
    check_saving_listing_and_loading(_store(azurite, container, base_folder="team-a"))
    names = azurite.blob_names(container)
    assert names and all(name.startswith("team-a/models/") for name in names), names
    # Another base folder of the same container holds none of them.
    assert _store(azurite, container, base_folder="team-b").records() == []
