"""The sandbox's ready file: what is written is what is read, and only its owner can read it."""

from __future__ import annotations

import stat
from pathlib import Path

from flows.tournaments import CLASSIC, SIGNALS
from sandbox.ready import READY_FILE, SandboxReady


def test_the_ready_file_round_trips_with_mode_0600(tmp_path: Path):
    written = SandboxReady(
        url="http://127.0.0.1:5000/",
        public_id="fake-public-id",
        secret_key="fake-secret-key",
        models={"alpha": "id-alpha", "beta": "id-beta"},
        model_tournaments={"alpha": CLASSIC, "beta": SIGNALS},
        yahoo_url="http://127.0.0.1:5000/yahoo",
        pid=4242,
    )
    path = tmp_path / "nested" / READY_FILE
    written.write(path)
    assert SandboxReady.read(path) == written
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [READY_FILE]  # no temporary file left


def test_no_ready_file_or_a_partial_one_reads_as_none(tmp_path: Path):
    path = tmp_path / READY_FILE
    assert SandboxReady.read(path) is None
    path.write_text('{"url": "http://127.0.0.1:5000/", "public')
    assert SandboxReady.read(path) is None


def test_the_secret_key_is_not_in_its_repr():
    ready = SandboxReady(url="http://127.0.0.1:5000/", public_id="p", secret_key="fake-secret")
    assert "fake-secret" not in repr(ready)
