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
WIDE = {"COLUMNS": "300"}  # rich boxes an error to the terminal's width


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


def test_add_model_gives_the_account_a_model_numerapi_then_finds(sandbox: Sandbox, napi):
    added = CliRunner().invoke(app, ["add-model", "fresh_model", "--url", sandbox.url])
    assert added.exit_code == 0, added.output
    assert "fresh_model" in napi.get_models()
    again = CliRunner().invoke(app, ["add-model", "fresh_model", "--url", sandbox.url])
    assert again.exit_code == 0, "adding a model twice is no error"
    nameless = httpx.post(f"{sandbox.url}_sandbox/models", json={})
    assert nameless.status_code == 400 and "send the model's name" in nameless.json()["error"]


def test_admin_command_reports_an_unreachable_sandbox():
    result = CliRunner().invoke(app, ["open-round", "--url", "http://127.0.0.1:9/"])
    assert result.exit_code != 0
    assert "cannot reach a sandbox" in result.output


def test_an_admin_command_the_sandbox_refuses_shows_its_answer_not_a_traceback(sandbox: Sandbox):
    result = CliRunner().invoke(app, ["chaos", "--url", sandbox.url, "--delay-s", "5", "1"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "answered 400" in result.stderr and "delay_s" in result.stderr


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


def test_through_the_project_cli_open_round_finds_the_stack_sandbox_and_names_the_webhooks(
    sandbox: Sandbox, tmp_path: Path, monkeypatch
):
    from deployments.cli import app as project_app

    for name in ("NUMERAI_API_URL", "NUMERAI_NODES_SANDBOX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMERAI_NODES_HOME", str(tmp_path / "home"))
    # What `numerai-nodes up --sandbox` leaves in its run directory while the sandbox runs.
    SandboxReady(sandbox.url, sandbox.public_id, sandbox.secret_key).write(
        tmp_path / "home" / "run" / "sandbox.json"
    )
    model_id = sandbox.models["sandbox_model"]
    sandbox.state.set_webhook(model_id, f"{sandbox.url}_sandbox/nowhere")

    opened = CliRunner().invoke(project_app, ["sandbox", "open-round"])

    assert opened.exit_code == 0, opened.output
    assert "round 1001" in opened.stdout
    assert "webhooks called: sandbox_model" in opened.stdout
    monkeypatch.delenv("NUMERAI_NODES_SANDBOX_URL", raising=False)  # set by the root command


def test_without_a_sandbox_the_admin_commands_say_how_to_get_one(tmp_path: Path, monkeypatch):
    for name in ("NUMERAI_API_URL", "NUMERAI_NODES_SANDBOX_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["submissions"], env=WIDE)
    assert result.exit_code == 2
    assert "numerai-nodes up --sandbox" in " ".join(result.output.split())


def test_serve_refuses_a_busy_port_and_a_missing_data_dir_in_one_line(tmp_path: Path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = CliRunner().invoke(
            app, ["serve", "--port", str(port), "--root", str(tmp_path)], env=WIDE
        )
    missing = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "nope")], env=WIDE)
    assert busy.exit_code == 2 and f"127.0.0.1:{port} is in use" in busy.output
    assert missing.exit_code == 2 and "is not a directory of Numerai files" in missing.output
    assert busy.exception is None or isinstance(busy.exception, SystemExit)
