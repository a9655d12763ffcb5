"""The data cache layout: static files per version, live files per round."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cache import dataset_path, predictions_path
from flows.settings import source_label


def test_live_data_gets_a_directory_per_round_and_static_files_do_not():
    root = Path("cache")
    assert dataset_path(root, "v5.2", "train.parquet", 7) == root / "v5.2" / "train.parquet"
    assert dataset_path(root, "v5.2", "live.parquet", 7) == root / "v5.2/rounds/7/live.parquet"
    assert dataset_path(root, "v5.2", "live.parquet", 8) != dataset_path(
        root, "v5.2", "live.parquet", 7
    )


def test_live_data_without_a_round_is_a_programming_error():
    with pytest.raises(ValueError, match="changes every round"):
        dataset_path(Path("c"), "v5.2", "live.parquet", None)


def test_predictions_are_per_round_and_node():
    path = predictions_path(Path("c"), "v5.2", 3, "tournament")
    assert path == Path("c/v5.2/rounds/3/predictions/tournament.csv")


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("https://api-tournament.numer.ai", "api-tournament.numer.ai"),
        ("http://127.0.0.1:8123/", "127.0.0.1_8123"),
    ],
)
def test_each_api_gets_its_own_cache(url, label):
    assert source_label(url) == label


def test_a_live_file_is_checked_again_and_replaced_when_numerai_serves_other_data(tmp_path):
    """A restarted local Numerai can serve other live data under the same round number."""
    from flows.cache import fetch
    from flows.numerai import NumeraiClient
    from models.frames import read_ids
    from sandbox.runner import Sandbox

    cache_dir = tmp_path / "cache"
    seen = []
    for seed in (0, 1):
        with Sandbox(tmp_path / str(seed), size="tiny", seed=seed) as sandbox:
            client = NumeraiClient(sandbox.url)
            path, cached = fetch(client, cache_dir, "v5.2", "live.parquet", sandbox.current_round())
            again, cached_again = fetch(
                client, cache_dir, "v5.2", "live.parquet", sandbox.current_round()
            )
            assert again == path and not cached and cached_again
            assert sorted(read_ids(path)) == sorted(sandbox.live_ids())
            seen.append(set(read_ids(path)))
    assert seen[0] != seen[1]
