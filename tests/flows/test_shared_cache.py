"""The data cache under concurrent nodes: one download, whole files only, damage repaired."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import httpx
import pytest
from filelock import FileLock, Timeout

from flows import cache, files
from flows.download import part_path
from flows.numerai import NumeraiClient
from models.frames import read_ids
from sandbox.runner import Sandbox
from tests.flows.racer import hold, race

RACERS = 4
LIVE = "live.parquet"


@pytest.fixture(scope="module")
def sandbox(sandbox_data):
    with Sandbox(sandbox_data, size="tiny") as running:
        yield running


@pytest.fixture
def faults(sandbox):
    """The sandbox's faults and chaos for one test, turned off after it."""
    yield sandbox
    sandbox.faults.update({"latency_s": 0.0})
    sandbox.chaos.configure({"enabled": False, "truncate": 0.0, "reset": True})


def _gets(sandbox: Sandbox, filename: str) -> int:
    """How many GETs of `filename` the sandbox's file storage has served so far."""
    return httpx.get(f"{sandbox.url}_sandbox/downloads").json().get(f"v5.2/{filename}", 0)


def _racing(sandbox: Sandbox, cache_dir, filename: str, round_number: int | None) -> list:
    """Start RACERS node processes on one file at once; their (cached, size) or (error, message)."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    racers = [
        context.Process(
            target=race,
            args=(sandbox.url, str(cache_dir), filename, start, results, round_number),
        )
        for _ in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    start.set()
    for racer in racers:
        racer.join(120)
        assert racer.exitcode == 0
    return [results.get(timeout=5) for _ in racers]


@pytest.mark.parametrize("filename", ["features.json", "train.parquet"])
def test_many_processes_racing_on_one_file_download_it_once_and_all_read_it_whole(
    sandbox, tmp_path, filename
):
    outcomes = _racing(sandbox, tmp_path, filename, None)
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


def test_nodes_that_wait_for_another_nodes_live_download_reuse_it_without_a_get(faults, tmp_path):
    """Live data is compared with what Numerai serves before it is reused, except by a node that
    waited while another node downloaded it: that copy is as fresh as a check would say."""
    sandbox = faults
    sandbox.faults.update({"latency_s": 1.0})  # the first node holds the lock for seconds
    before = _gets(sandbox, LIVE)
    outcomes = _racing(sandbox, tmp_path, LIVE, sandbox.current_round())
    assert sorted(cached for cached, _ in outcomes) == [False] + [True] * (RACERS - 1)
    assert _gets(sandbox, LIVE) - before == 1
    assert len({size for _, size in outcomes}) == 1


def test_a_cut_live_download_is_never_readable_by_any_node(faults, tmp_path):
    """Every download is cut short (and every resume refused): no node gets a path, nothing is
    at the cached name; once the storage recovers, the next node completes the same file."""
    sandbox = faults
    round_number = sandbox.current_round()
    sandbox.chaos.configure({"enabled": True, "truncate": 1.0, "reset": True})
    outcomes = _racing(sandbox, tmp_path, LIVE, round_number)
    assert {error for error, _ in outcomes} == {"NumeraiUnavailable"}, outcomes
    assert sandbox.chaos.to_json()["counts"]["truncate"] >= 1  # type: ignore[index]
    dest = cache.dataset_path(tmp_path, "v5.2", LIVE, round_number)
    assert not dest.exists() and part_path(dest).exists()
    sandbox.chaos.configure({"enabled": False})
    path, cached = cache.fetch(NumeraiClient(sandbox.url), tmp_path, "v5.2", LIVE, round_number)
    assert path == dest and not cached
    assert sorted(read_ids(path)) == sorted(sandbox.live_ids())
    assert not part_path(dest).exists()


def test_a_node_that_dies_downloading_leaves_no_lock_behind(faults, tmp_path):
    """The operating system drops a dead node's lock: the next node downloads the file at once."""
    sandbox = faults
    round_number = sandbox.current_round()
    dest = cache.dataset_path(tmp_path, "v5.2", LIVE, round_number)
    sandbox.faults.update({"latency_s": 5.0})  # the downloader waits under the lock
    holder = multiprocessing.get_context("spawn").Process(
        target=hold, args=(sandbox.url, str(tmp_path), LIVE, round_number)
    )
    holder.start()
    try:
        _wait_until_locked(dest)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(10)
    sandbox.faults.update({"latency_s": 0.0})
    path, cached = cache.fetch(  # a lock left held would raise CacheBusy after 10 s
        NumeraiClient(sandbox.url), tmp_path, "v5.2", LIVE, round_number, lock_timeout=10
    )
    assert not cached
    assert sorted(read_ids(path)) == sorted(sandbox.live_ids())


def _wait_until_locked(path, timeout: float = 60.0) -> None:
    """Return once another process holds `path`'s lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = FileLock(files.lock_path(path), timeout=0)
        try:
            probe.acquire()
        except Timeout:
            return
        probe.release()
        time.sleep(0.05)
    raise AssertionError(f"no process took {path.name}'s lock within {timeout:.0f} s")
