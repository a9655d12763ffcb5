"""The local stack: settings, ports, and stopping only the processes it started."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from prefect.settings import Settings
from typer.testing import CliRunner

from deployments.cli import app
from infra.local.prefect_setup import RECORDING_LAG_SECONDS
from infra.local.stack import LocalStack, PortInUse, StackSettings

PROJECT = Path(__file__).parents[3]
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


def test_the_server_records_events_in_batches_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "7")
    stack = LocalStack(StackSettings(home=tmp_path / "home", _env_file=None), project_dir=tmp_path)
    env = stack._server_env()
    for key, value in env.items():  # as the server reads them: Prefect's own setting names
        if key.startswith("PREFECT_SERVER_SERVICES_"):
            monkeypatch.setenv(key, value)
    services = Settings().server.services
    assert services.task_run_recorder.batch_size == 7  # the environment's
    assert services.task_run_recorder.flush_interval == RECORDING_LAG_SECONDS
    assert services.event_persister.batch_size == 100
    assert services.event_persister.flush_interval == RECORDING_LAG_SECONDS


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


# The running stack (`up --sandbox` to `down`) is tested with round day, on one stack:
# tests/integration/test_round_day.py.


def _text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
