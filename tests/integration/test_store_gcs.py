"""The model store on a Cloud Storage bucket, through prefect-gcp's GcsBucket block (a Cloud Run
pool's result storage): missing, saved, listed, newest of a family; as tests/flows/test_store.py
does on files and S3.

The block's google-cloud-storage client reaches the fake the way it reaches Google: `HTTPS_PROXY`
to a loopback CONNECT proxy that terminates TLS with a test CA (`REQUESTS_CA_BUNDLE`) and hands
`storage.googleapis.com` to the GCS fake and `oauth2.googleapis.com` to the Cloud Run fake's
token endpoint (the service account's key is the Cloud Run fake's; no job runs, no Prefect server).
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.store import ModelStore, _BlockStorage
from tests.flows.test_store import (
    check_a_rewritten_record_keeps_its_model,
    check_saving_listing_and_loading,
)
from tests.integration.cloud_run_fake import CloudRunFake
from tests.integration.containers import LocalProcesses
from tests.integration.gcs_fake import GcsFake
from tests.integration.servers import UvicornThread
from tests.integration.tls_proxy import InterceptingProxy

pytestmark = pytest.mark.integration
PROJECT = "fake-project"


@pytest.fixture(scope="module")
def google(tmp_path_factory) -> Iterator[tuple[GcsFake, dict[str, str]]]:
    """The GCS fake behind Google's front door, and a service account key it accepts tokens of."""
    root = tmp_path_factory.mktemp("gcs")
    # Only its OAuth endpoint serves here: no job runs, so containers are local processes.
    oauth = CloudRunFake(
        root / "containers", launcher=LocalProcesses(Path.cwd(), root / "homes"), secrets={}
    )
    gcs = GcsFake([])
    with (
        UvicornThread(oauth.app) as oauth_api,
        UvicornThread(gcs.app) as gcs_api,
        InterceptingProxy(
            {"oauth2.googleapis.com": oauth_api.port, "storage.googleapis.com": gcs_api.port},
            root / "tls",
        ) as proxy,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("HTTPS_PROXY", proxy.url)
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        patch.setenv("REQUESTS_CA_BUNDLE", str(proxy.ca_path))  # google-auth and Cloud Storage
        yield gcs, oauth.service_account_info(PROJECT)
        _close_connections(proxy)


def _close_connections(proxy: InterceptingProxy, timeout: float = 10) -> None:
    """prefect-gcp makes a storage client per call and never closes it: collect the clients and
    wait until the proxy has piped out their keep-alive connections, so none is left open (a
    ResourceWarning, an error here) when the proxy stops."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    deadline = time.monotonic() + timeout
    while asyncio.all_tasks(proxy._loop) and time.monotonic() < deadline:  # one per connection
        time.sleep(0.05)


@pytest.fixture
def store(google, tmp_path: Path) -> ModelStore:
    from prefect_gcp import GcpCredentials, GcsBucket

    gcs, info = google
    bucket = f"results-{tmp_path.name.replace('_', '-').lower()}"[:63]
    gcs.objects[bucket] = {}
    block = GcsBucket(bucket=bucket, gcp_credentials=GcpCredentials(service_account_info=info))
    return ModelStore(_BlockStorage(block, "gcs-bucket/results"))


def test_a_missing_model_is_none_and_a_saved_one_is_found_listed_and_loaded(store):
    check_saving_listing_and_loading(store)


def test_a_record_is_written_after_its_model(store):
    check_a_rewritten_record_keeps_its_model(store)
