"""The data cache under concurrent nodes: one download, whole files only, damage repaired."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from flows import cache, files
from flows.numerai import NumeraiClient
from sandbox.runner import Sandbox
from tests.flows.racer import race

RACERS = 4


@pytest.fixture(scope="module")
def sandbox(sandbox_data):
    with Sandbox(sandbox_data, size="tiny") as running:
        yield running


@pytest.mark.parametrize("filename", ["features.json", "train.parquet"])
def test_many_processes_racing_on_one_file_download_it_once_and_all_read_it_whole(
    sandbox, tmp_path, filename
):
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    racers = [
        context.Process(target=race, args=(sandbox.url, str(tmp_path), filename, start, results))
        for _ in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    start.set()
    for racer in racers:
        racer.join(120)
        assert racer.exitcode == 0
    outcomes = [results.get(timeout=5) for _ in racers]
    assert sorted(cached for cached, _ in outcomes) == [False] + [True] * (RACERS - 1)
    assert len({size for _, size in outcomes}) == 1
    leftovers = [p.name for p in (tmp_path / "v5.2").iterdir() if p.name != filename]
    assert all(name.endswith(files.LOCK_SUFFIX) for name in leftovers), leftovers


@pytest.mark.parametrize(
    ("filename", "damage"),
    [
        ("features.json", lambda data: data[: len(data) // 2]),  # cut short
        ("features.json", lambda data: data + data),  # two copies of itself
        ("train.parquet", lambda data: data[: len(data) - 100]),  # footer lost
        ("train.parquet", lambda data: b"\0" * len(data)),  # right size, garbage inside
    ],
)
def test_a_damaged_cached_file_is_fetched_again_on_the_next_read(
    sandbox, tmp_path, filename, damage
):
    client = NumeraiClient(sandbox.url)
    path, _ = cache.fetch(client, tmp_path, "v5.2", filename, None)
    good = path.read_bytes()
    path.write_bytes(damage(good))
    again, cached = cache.fetch(client, tmp_path, "v5.2", filename, None)
    assert again == path and not cached
    assert again.read_bytes() == good


def test_a_file_that_fails_to_read_is_discarded_and_the_error_is_transient(tmp_path):
    damaged = tmp_path / "features.json"
    damaged.write_text('{"feature_sets": ')
    with pytest.raises(cache.CorruptFile, match="discarded") as raised, cache.reading(damaged):
        json.loads(damaged.read_text())
    assert raised.value.transient
    assert not damaged.exists()


def test_a_live_file_is_compared_with_what_numerai_serves(sandbox, tmp_path):
    client = NumeraiClient(sandbox.url)
    round_number = sandbox.current_round()
    path, cached = cache.fetch(client, tmp_path, "v5.2", "live.parquet", round_number)
    again, cached_again = cache.fetch(client, tmp_path, "v5.2", "live.parquet", round_number)
    assert path == again and not cached and cached_again
