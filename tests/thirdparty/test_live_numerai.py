"""The read-only calls every node makes, through the node's own Numerai client: the current
round, the datasets listing, a dataset's download URL, and the account's models.

Each test runs against two targets: the sandbox (always) and the real Numerai (marked `live`,
so deselected by default; run them with `pytest -m live tests/thirdparty`). The account's
models are read only when NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY are set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numerapi.base_api
import pytest

from flows.numerai import NumeraiClient
from flows.tournaments import CLASSIC, SIGNALS
from sandbox.catalog import newest_version
from sandbox.runner import Sandbox
from tests.conftest import LIVE_NUMERAI_KEYS

# numerapi's own address of Numerai's API, read before any test points it elsewhere
NUMERAI_API_URL = numerapi.base_api.API_TOURNAMENT_URL


@dataclass(frozen=True)
class Target:
    """Where the calls go, and the keys of an account there (None: no keys)."""

    name: str
    url: str
    public_id: str | None
    secret_key: str | None

    def client(self, tournament: int = CLASSIC) -> NumeraiClient:
        return NumeraiClient(self.url, self.public_id, self.secret_key, tournament=tournament)


@pytest.fixture(
    params=[pytest.param("sandbox"), pytest.param("numerai", marks=pytest.mark.live)],
)
def target(request: pytest.FixtureRequest, data_root: Path) -> Iterator[Target]:
    if request.param == "sandbox":
        with Sandbox(data_root) as sb:
            yield Target("sandbox", sb.url, sb.public_id, sb.secret_key)
    else:
        keys = LIVE_NUMERAI_KEYS
        yield Target(
            "numerai", NUMERAI_API_URL, keys["NUMERAI_PUBLIC_ID"], keys["NUMERAI_SECRET_KEY"]
        )


@pytest.mark.parametrize("tournament", [CLASSIC, SIGNALS])
def test_the_current_round(target: Target, tournament: int):
    current = target.client(tournament).current_round()
    assert current.number > 0
    assert current.open_time is not None and current.open_time.tzinfo is not None
    assert current.close_staking_time is None or current.close_staking_time > current.open_time


def _newest_live(names: list[str], prefix: str = "") -> str:
    """The newest version that lists a live.parquet (e.g. `v5.2`, `signals/v2.0`)."""
    versions = [
        n.rsplit("/", 1)[0] for n in names if n.startswith(prefix) and n.endswith("/live.parquet")
    ]
    newest = newest_version(versions)
    assert newest is not None, f"no live.parquet in {names}"
    return newest


def test_the_datasets_listing(target: Target):
    names = target.client().list_datasets()
    version = _newest_live(names, prefix="v")
    for name in (
        "train.parquet",
        "validation.parquet",
        "features.json",
        "live_example_preds.parquet",
    ):
        assert f"{version}/{name}" in names


def test_the_signals_datasets_listing(target: Target):
    names = target.client(SIGNALS).list_datasets()
    version = _newest_live(names, prefix="signals/")
    assert f"{version}/train.parquet" in names


def test_a_dataset_download_url(target: Target):
    client = target.client()
    version = _newest_live(client.list_datasets(), prefix="v")
    url = client.dataset_url(f"{version}/features.json")
    assert url.startswith(("http://", "https://"))
    size = client.served_size(f"{version}/features.json")
    assert size is not None and size > 0


def test_the_accounts_models(target: Target):
    if not (target.public_id and target.secret_key):
        pytest.skip("NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY are not set: no account to read")
    models = target.client().models()
    assert all(isinstance(name, str) and len(model_id) == 36 for name, model_id in models.items())
