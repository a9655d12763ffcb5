"""The local stack: settings, safe stopping, and `up --sandbox` to `down` with real processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from deployments.cli import app
from deployments.stack import LocalStack, PortInUse, StackSettings
from flows.numerai import NumeraiClient
from tests.integration.servers import free_port

PROJECT = Path(__file__).parents[2]
runner = CliRunner()


# Settings and process bookkeeping (no servers) ---------------------------------------------------


def test_settings_defaults_and_run_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NUMERAI_NODES_HOME", str(tmp_path / "home"))
    settings = StackSettings(_env_file=None)
    assert (settings.prefect_port, settings.gateway_port, settings.sandbox_port) == (
        4200,
        8787,
        8686,
    )
    assert settings.worker_poll_seconds == 1
    assert settings.database_url is None
    assert settings.run_dir == tmp_path / "home" / "run"
    stack = LocalStack(settings, project_dir=tmp_path)
    assert stack.stack_file == tmp_path / "home" / "run" / "stack.json"
    assert stack.logs_dir == tmp_path / "home" / "run" / "logs"


def test_database_url_must_be_postgres_and_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMERAI_NODES_DATABASE_URL", "postgresql://prefect:hunter2@db:5432/prefect")
    url = StackSettings(_env_file=None).database_url
    assert url is not None
    assert url.get_secret_value() == "postgresql+asyncpg://prefect:hunter2@db:5432/prefect"
    assert "hunter2" not in repr(url)

    monkeypatch.setenv("NUMERAI_NODES_DATABASE_URL", "mysql://prefect:hunter2@db/prefect")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert "NUMERAI_NODES_DATABASE_URL" in _text(result)
    assert "PostgreSQL" in _text(result)
    assert "hunter2" not in result.output


def test_status_and_down_without_a_stack(tmp_path: Path) -> None:
    stack = LocalStack(StackSettings(home=tmp_path / "home", _env_file=None), project_dir=tmp_path)
    assert stack.status() == []
    assert stack.info() is None
    assert stack.down() == []


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = StackSettings(home=tmp_path / "home", prefect_port=port, _env_file=None)
        stack = LocalStack(settings, project_dir=PROJECT)
        with pytest.raises(PortInUse, match=f"Port {port} .*NUMERAI_NODES_PREFECT_PORT"):
            stack.up()
    assert not stack.stack_file.exists()


def _sleeper(marker: Path) -> subprocess.Popen[bytes]:
    """A child in its own session that notes a SIGINT in `marker` and then exits."""
    code = (
        "import pathlib, signal, sys, time\n"
        f"def stop(*_): pathlib.Path({str(marker)!r}).write_text('SIGINT'); sys.exit(0)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        f"pathlib.Path({str(marker)!r}).write_text('ready')\n"
        "time.sleep(120)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return process


def _record(process: subprocess.Popen[bytes], name: str, log: Path, shift: float = 0.0) -> dict:
    created = psutil.Process(process.pid).create_time() + shift
    return {"name": name, "pid": process.pid, "create_time": created, "url": None, "log": str(log)}


def test_down_signals_only_the_processes_it_started(tmp_path: Path) -> None:
    stack = LocalStack(StackSettings(home=tmp_path / "home", _env_file=None), project_dir=tmp_path)
    ours, reused = _sleeper(tmp_path / "ours"), _sleeper(tmp_path / "reused")
    try:
        stack.run_dir.mkdir(parents=True)
        # `reused` stands for a PID the system gave to another program after the stack died.
        processes = {
            "worker": _record(ours, "worker", stack.logs_dir / "worker.log"),
            "server": _record(reused, "server", stack.logs_dir / "server.log", shift=-100),
        }
        stack.stack_file.write_text(json.dumps({"processes": processes}))
        assert [(s.name, s.alive) for s in stack.status()] == [("worker", True), ("server", False)]

        stopped = stack.down()

        assert [(s.name, s.alive) for s in stopped] == [("worker", False), ("server", False)]
        assert (tmp_path / "ours").read_text() == "SIGINT"  # asked to stop before being killed
        assert reused.poll() is None and (tmp_path / "reused").read_text() == "ready"
        assert not stack.stack_file.exists()
        assert stack.down() == []
    finally:
        for process in (ours, reused):
            if process.poll() is None:
                process.kill()
                process.wait()


# The whole stack, with a sandbox (real processes) ------------------------------------------------


@dataclass
class RunningStack:
    stack: LocalStack
    up_output: str
    ports: dict[str, int]

    def api(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}/api/{path}"

    def sandbox_state(self) -> dict:
        url = f"http://127.0.0.1:{self.ports['sandbox']}/_sandbox/state"
        return httpx.get(url, timeout=10).raise_for_status().json()

    def webhook(self) -> str | None:
        models = {m["name"]: m for m in self.sandbox_state()["models"]}
        return models["my_model"]["webhook"]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    home = tmp_path_factory.mktemp("stack") / "home"
    ports = {"prefect": free_port(), "gateway": free_port(), "sandbox": free_port()}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT)
        patch.setenv("NUMERAI_NODES_HOME", str(home))
        for name, port in ports.items():
            patch.setenv(f"NUMERAI_NODES_{name.upper()}_PORT", str(port))
        patch.setenv("NUMERAI_NODES_START_TIMEOUT_SECONDS", "120")
        patch.setenv("PREFECT_UI_ENABLED", "false")
        patch.setenv("PREFECT_SERVER_UI_ENABLED", "false")
        for name in ("NUMERAI_NODES_TOKEN_TOURNAMENT", "NUMERAI_NODES_GATEWAY_PUBLIC_URL"):
            patch.delenv(name, raising=False)
        stack = LocalStack(StackSettings(), project_dir=PROJECT)
        try:
            result = runner.invoke(app, ["up", "--sandbox", "--sandbox-size", "tiny"])
            assert result.exit_code == 0, result.output + _logs(stack)
            yield RunningStack(stack, result.output, ports)
        finally:
            stack.down()


def _logs(stack: LocalStack) -> str:
    return "".join(f"\n--- {p.name}:\n{stack.log_tail(p.name, 30)}" for p in stack.status())


def _text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _status(running: RunningStack) -> dict:
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.integration
def test_up_starts_server_sandbox_worker_and_gateway(running: RunningStack) -> None:
    status = _status(running)
    assert status["running"] is True
    assert {p["name"]: p["alive"] for p in status["processes"]} == {
        "server": True,
        "sandbox": True,
        "worker": True,
        "gateway": True,
    }
    assert status["ui_url"] == f"http://127.0.0.1:{running.ports['prefect']}"
    assert all(Path(p["log"]).is_file() for p in status["processes"])


@pytest.mark.integration
def test_stack_json_and_output_hold_no_secrets(running: RunningStack) -> None:
    keys = running.stack.sandbox_keys()
    assert keys is not None
    token = (running.webhook() or "").rsplit("/", 1)[-1]
    assert len(token) >= 16
    recorded = running.stack.stack_file.read_text()
    for secret in (keys["NUMERAI_SECRET_KEY"], token):
        assert secret not in recorded
        assert secret not in running.up_output
        assert secret not in runner.invoke(app, ["status", "--json"]).output


@pytest.mark.integration
def test_the_deployment_the_pool_and_the_worker_exist(running: RunningStack) -> None:
    deployments = httpx.post(running.api("deployments/filter"), json={}, timeout=10).json()
    assert sorted(d["name"] for d in deployments) == ["signals", "tournament"]
    assert {d["work_pool_name"] for d in deployments} == {"local"}
    pool = httpx.get(running.api("work_pools/local"), timeout=10).json()
    assert pool["type"] == "process"
    workers = httpx.post(running.api("work_pools/local/workers/filter"), json={}, timeout=10)
    assert [w["name"] for w in workers.json()] == ["numerai-nodes-local"]


@pytest.mark.integration
def test_the_sandbox_calls_the_gateway_with_a_valid_token(running: RunningStack) -> None:
    webhook = running.webhook()
    gateway = f"http://127.0.0.1:{running.ports['gateway']}"
    assert webhook is not None and webhook.startswith(f"{gateway}/hooks/tournament/")
    assert httpx.get(f"{gateway}/healthz", timeout=10).status_code == 200
    # The token authenticates (a body that is not an object is 422, after authentication) and a
    # wrong one does not (404); neither creates an event, so no flow run starts.
    assert httpx.post(webhook, json=[], timeout=10).status_code == 422
    wrong = webhook[:-4] + "xxxx"
    assert httpx.post(wrong, json={"triggerId": "t"}, timeout=10).status_code == 404


@pytest.mark.integration
def test_up_again_says_the_stack_is_up(running: RunningStack) -> None:
    before = [(p.name, p.pid) for p in running.stack.status()]
    result = runner.invoke(app, ["up", "--sandbox", "--sandbox-size", "tiny"])
    assert result.exit_code == 0, result.output
    assert "already up" in _text(result) and "`numerai-nodes down` stops it" in _text(result)
    assert [(p.name, p.pid) for p in running.stack.status()] == before


@pytest.mark.integration
def test_webhook_register_sets_the_sandbox_webhook_again(running: RunningStack) -> None:
    registered = running.webhook()
    assert registered is not None
    keys = running.stack.sandbox_keys() or {}
    numerai = NumeraiClient(
        keys["NUMERAI_API_URL"], keys["NUMERAI_PUBLIC_ID"], keys["NUMERAI_SECRET_KEY"]
    )
    numerai.set_webhook(running.stack.sandbox_models()["my_model"], None)
    assert running.webhook() is None

    result = runner.invoke(app, ["webhook", "register", "tournament", "--sandbox"])

    assert result.exit_code == 0, result.output
    assert running.webhook() == registered
    assert "/hooks/tournament/****" in _text(result)
    assert registered.rsplit("/", 1)[-1] not in result.output


@pytest.mark.integration
def test_status_tails_the_logs(running: RunningStack) -> None:
    result = runner.invoke(app, ["status", "--logs", "5"])
    assert result.exit_code == 0, result.output
    assert "worker.log" in result.output
    assert "Worker 'numerai-nodes-local' started" in _text(result)


@pytest.mark.integration
def test_webhook_token_shows_a_token_only_when_created(running: RunningStack) -> None:
    old = (running.webhook() or "").rsplit("/", 1)[-1]
    kept = runner.invoke(app, ["webhook", "token", "tournament", "--local"])
    assert kept.exit_code == 0, kept.output
    assert "has a webhook token" in _text(kept) and old not in kept.output

    rotated = runner.invoke(app, ["webhook", "token", "tournament", "--local", "--rotate"])

    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip()
    assert len(new) >= 16 and new != old
    assert "webhook register tournament" in _text(rotated)


@pytest.mark.integration
def test_down_stops_everything_and_a_second_down_is_harmless(running: RunningStack) -> None:
    processes = running.stack.status()
    assert len(processes) == 4

    result = runner.invoke(app, ["down"])

    assert result.exit_code == 0, result.output
    assert "Stopped the local stack (worker, gateway, sandbox, server)" in _text(result)
    for process in processes:
        assert not _running(process.pid), process
    assert not running.stack.stack_file.exists()
    again = runner.invoke(app, ["down"])
    assert again.exit_code == 0 and "not running" in _text(again)
    assert _status(running)["running"] is False


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
