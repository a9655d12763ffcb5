"""The sandbox CLI: admin commands against a running sandbox; `python -m sandbox` as a process."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numerapi
from typer.testing import CliRunner

from flows.tournaments import CLASSIC, SIGNALS
from sandbox.cli import app
from sandbox.ready import SandboxReady
from sandbox.runner import Sandbox

PROJECT = Path(__file__).resolve().parents[2]


def test_admin_commands(sandbox: Sandbox):
    runner = CliRunner()
    opened = runner.invoke(app, ["open-round", "--url", sandbox.url, "--json"])
    assert opened.exit_code == 0, opened.output
    assert json.loads(opened.stdout)["number"] == 1001 == sandbox.current_round()
    closed = runner.invoke(app, ["close-round", "--url", sandbox.url])
    assert closed.exit_code == 0
    assert f"round 1001 (tournament {CLASSIC.value}) closed" in closed.stdout
    signals = ["open-round", "--url", sandbox.url, "--tournament", str(SIGNALS.value), "--json"]
    opened_signals = runner.invoke(app, signals)
    assert opened_signals.exit_code == 0, opened_signals.output
    assert json.loads(opened_signals.stdout)["tournament"] == SIGNALS
    assert sandbox.current_round(SIGNALS) == 1001
    listed = runner.invoke(app, ["submissions", "--url", sandbox.url, "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    faults = runner.invoke(app, ["faults", "--url", sandbox.url, "--reject-uploads"])
    assert faults.exit_code == 0 and sandbox.faults.reject_uploads is True


def test_admin_command_reports_an_unreachable_sandbox():
    result = CliRunner().invoke(app, ["open-round", "--url", "http://127.0.0.1:9/"])
    assert result.exit_code != 0
    assert "cannot reach a sandbox" in result.output


def test_python_m_sandbox_ready_file_and_sigterm(tmp_path: Path, data_root: Path, monkeypatch):
    ready = tmp_path / "ready.json"
    command = [sys.executable, "-m", "sandbox", "--root", str(data_root), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--ready-file", str(ready), "--model", "alpha"],
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
        assert stat.S_IMODE(ready.stat().st_mode) == 0o600
        assert info.pid == process.pid and info.url.startswith("http://127.0.0.1:")
        assert info.model_tournaments == {"alpha": CLASSIC}
        assert httpx.get(f"{info.url}healthz").json() == {"status": "ok"}
        monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", info.url)
        api = numerapi.NumerAPI(info.public_id, info.secret_key, verbosity="critical")
        assert api.get_models() == info.models and "alpha" in info.models
        assert api.get_current_round() == 1000
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        assert info.url in stderr.decode()
        assert not ready.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
