"""Turning chaos on and off: the admin API, `sandbox chaos`, `serve --chaos`, round windows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numerapi
import pytest
from typer.testing import CliRunner

from sandbox.chaos import COUNTED, PROFILES, Chaos, ChaosProfile
from sandbox.cli import app
from sandbox.errors import SandboxConfigError, SandboxError
from sandbox.ready import SandboxReady
from sandbox.runner import Sandbox
from sandbox.state import ManualClock, SandboxState

PROJECT = Path(__file__).resolve().parents[2]


def test_the_admin_api_turns_chaos_on_changes_it_and_turns_it_off(sandbox: Sandbox):
    url = f"{sandbox.url}_sandbox/chaos"
    off = httpx.get(url).json()
    assert off["enabled"] is False and off["counts"] == dict.fromkeys(COUNTED, 0)
    mild = httpx.post(url, json={"seed": 5, "profile": "mild", "drop": 0.5}).json()
    assert mild["enabled"] is True and mild["seed"] == 5
    assert mild["graphql_5xx"] == PROFILES["mild"].graphql_5xx and mild["drop"] == 0.5
    assert mild["delay_s"] == list(PROFILES["mild"].delay_s)
    for bad in (
        {"graphql_5xx": 1.5},
        {"delay": True},
        {"delay_s": [3, 1]},
        {"delay_s": [1]},
        {"seed": "x"},
        {"profile": "nope"},
        {"enabled": "yes"},
        {"nope": 1},
    ):
        response = httpx.post(url, json=bad)
        assert response.status_code == 400 and response.json()["error"], bad
    assert httpx.get(url).json() == mild  # a refused change changes nothing
    assert httpx.post(url, json={"enabled": False}).json()["enabled"] is False
    assert httpx.post(sandbox.url, json={"query": "{ listDatasets }"}).status_code == 200


def test_counters_count_until_reset_or_reseeded():
    chaos = Chaos(ChaosProfile(graphql_5xx=1.0), seed=1, enabled=True)
    for _ in range(3):
        assert chaos.graphql_5xx() in (502, 503)
        chaos.record("graphql_5xx")
        chaos.seen()
    assert chaos.counts["graphql_5xx"] == 3 and chaos.requests == 3
    chaos.configure({"reset": True})
    assert chaos.counts["graphql_5xx"] == 0 and chaos.requests == 0 and chaos.seed == 1
    chaos.record("drop")
    chaos.configure({"seed": 2})
    assert chaos.counts["drop"] == 0 and chaos.seed == 2


def test_each_kind_has_its_own_stream():
    """Changing one probability leaves the other kinds' decisions as they were."""
    one = Chaos(ChaosProfile(truncate=0.5, put_fail=0.5), seed=9, enabled=True)
    other = Chaos(ChaosProfile(truncate=0.5, put_fail=0.5, graphql_5xx=1.0), seed=9, enabled=True)
    for _ in range(20):
        assert one.graphql_5xx() is None and other.graphql_5xx() is not None
        assert one.truncate() == other.truncate() and one.put_fail() == other.put_fail()


def test_bad_profiles_are_refused():
    with pytest.raises(SandboxError, match="probability from 0 to 1"):
        ChaosProfile(drop=-0.1)
    with pytest.raises(SandboxConfigError, match="unknown chaos profile 'worst'"):
        Chaos.seeded(1, "worst")
    bad_day = Chaos.seeded(1).config
    assert (bad_day.graphql_5xx, bad_day.delay, bad_day.delay_s) == (0.3, 0.2, (2.0, 8.0))
    assert (bad_day.truncate, bad_day.put_fail, bad_day.drop) == (0.2, 0.2, 0.05)


def test_the_chaos_command(sandbox: Sandbox):
    runner = CliRunner()
    started = runner.invoke(
        app, ["chaos", "--url", sandbox.url, "--seed", "3", "--profile", "mild", "--json"]
    )
    assert started.exit_code == 0, started.output
    assert json.loads(started.stdout)["seed"] == 3 and sandbox.chaos.enabled
    assert sandbox.chaos.config == PROFILES["mild"]
    tuned = runner.invoke(
        app, ["chaos", "--url", sandbox.url, "--drop", "1", "--delay-s", "0.1", "0.2"]
    )
    assert tuned.exit_code == 0, tuned.output
    assert sandbox.chaos.config.drop == 1.0 and sandbox.chaos.config.delay_s == (0.1, 0.2)
    assert "chaos on, seed 3" in tuned.stdout and "drop_after" in tuned.stdout
    shown = runner.invoke(app, ["chaos", "--url", sandbox.url])
    assert shown.exit_code == 0 and "100% dropped connections" in shown.stdout
    stopped = runner.invoke(app, ["chaos", "--url", sandbox.url, "--off"])
    assert stopped.exit_code == 0 and "chaos off" in stopped.stdout
    assert not sandbox.chaos.enabled
    bad = runner.invoke(app, ["chaos", "--url", sandbox.url, "--profile", "worst"])
    assert bad.exit_code != 0 and "choose one of bad-day, mild" in bad.output
    out_of_range = runner.invoke(app, ["chaos", "--url", sandbox.url, "--drop", "2"])
    assert out_of_range.exit_code != 0


def test_a_round_window(sandbox: Sandbox, napi: numerapi.NumerAPI):
    opened = httpx.post(f"{sandbox.url}_sandbox/rounds/open", json={"window_seconds": 60}).json()
    open_time = datetime.fromisoformat(opened["openTime"])
    assert datetime.fromisoformat(opened["closeTime"]) - open_time == timedelta(seconds=60)
    assert napi.check_round_open() is True
    for bad in (0, -5, "soon", True):
        response = httpx.post(f"{sandbox.url}_sandbox/rounds/open", json={"window_seconds": bad})
        assert response.status_code == 400 and "window_seconds" in response.json()["error"]
    result = CliRunner().invoke(
        app, ["open-round", "--url", sandbox.url, "--window-seconds", "90", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    closes = datetime.fromisoformat(data["closeTime"]) - datetime.fromisoformat(data["openTime"])
    assert closes == timedelta(seconds=90)


def test_a_round_closes_when_its_window_ends():
    clock = ManualClock()
    state = SandboxState(public_id="p", secret_key="s", clock=clock)
    opened = state.open_round(window=timedelta(hours=1))
    assert opened.is_open(clock.now)
    clock.advance(timedelta(minutes=59))
    assert state.current_round().is_open(clock.now)
    clock.advance(timedelta(minutes=1))
    assert not state.current_round().is_open(clock.now)
    assert state.open_round().close_time - clock.now == state.round_length


def test_serve_with_chaos(tmp_path: Path, data_root: Path):
    ready = tmp_path / "ready.json"
    command = [sys.executable, "-m", "sandbox", "serve", "--root", str(data_root), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--chaos", "9", "--chaos-profile", "mild", "--ready-file", str(ready)],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while (info := SandboxReady.read(ready)) is None:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the sandbox never wrote its ready file"
            time.sleep(0.05)
        chaos = httpx.get(f"{info.url}_sandbox/chaos").json()
        assert chaos["enabled"] is True and chaos["seed"] == 9
        assert chaos["truncate"] == PROFILES["mild"].truncate
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        assert "seed 9" in stderr.decode()  # the banner names the chaos
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    refused = CliRunner().invoke(app, ["serve", "--chaos", "1", "--chaos-profile", "worst"])
    assert refused.exit_code != 0 and "choose one of bad-day, mild" in refused.output
