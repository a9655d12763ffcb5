"""Warm flow runs on a real local stack: the process worker's launcher, the zygote's forked child.

A stack of its own (its zygote is stopped by the last test): Prefect server, process worker,
zygote, gateway and a tiny sandbox. Webhook POSTs make flow runs as on round day; the tests look
at the processes and the run logs to see how each run started, and at Prefect's states to see
that a cancel or a kill of a warm run ends it as it would a cold one.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from infra.local import workers
from infra.local.processes import stop
from infra.local.stack import LocalStack, StackSettings
from infra.local.state import processes, read_state
from infra.local.zygote import MARKER
from tests.integration.local_stack import PROJECT, Stack, logs
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration
_FORKED = re.compile(re.escape(MARKER) + r" \(pid (\d+), parent pid (\d+)\)")


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("warm")
    ports = {"prefect": free_port(), "gateway": free_port(), "sandbox": free_port()}
    settings = StackSettings(
        home=root / "home",
        prefect_port=ports["prefect"],
        gateway_port=ports["gateway"],
        sandbox_port=ports["sandbox"],
        start_timeout_seconds=150,
        _env_file=None,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT)
        patch.setenv("PREFECT_SERVER_UI_ENABLED", "false")
        local = LocalStack(settings, project_dir=PROJECT)
        try:
            local.up(sandbox=True, sandbox_size="tiny")
            yield Stack(local, {}, ports, root / "home", None, "")
        finally:
            local.down()


def _fire(stack: Stack) -> str:
    """POST the node's webhook as Numerai would; returns the trigger id."""
    trigger_id = f"warm-{uuid.uuid4().hex[:12]}"
    webhook = stack.webhook
    assert webhook is not None
    answer = httpx.post(webhook, json={"triggerId": trigger_id, "roundNumber": None}, timeout=30)
    assert answer.status_code == 202, answer.text
    return trigger_id


def _run_id(stack: Stack, trigger_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runs := stack.runs(trigger_id):
            return runs[0]["id"]
        time.sleep(0.2)
    raise AssertionError(f"no flow run for {trigger_id}\n{logs(stack.stack)}")


def _run_logs(stack: Stack, run_id: str) -> str:
    found = stack.api("logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}}).json()
    return "\n".join(log["message"] for log in found)


def _forked(stack: Stack, run_id: str, timeout: float = 60) -> tuple[int, int]:
    """The (child pid, parent pid) the run's warm-start line names, once it is in the logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := _FORKED.search(_run_logs(stack, run_id)):
            return int(found[1]), int(found[2])
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not start warm\n{logs(stack.stack)}")


def _zygote(stack: Stack) -> psutil.Process:
    """The zygote process (its supervisor is what stack.json records)."""
    record = next(p for p in stack.stack.status() if p.name == workers.ZYGOTE)
    (zygote,) = psutil.Process(record.pid).children()
    assert "infra.local.zygote" in zygote.cmdline()
    return zygote


def _launcher(stack: Stack, run_id: str) -> psutil.Process:
    """The process the worker started for the run: the launcher."""
    record = next(p for p in stack.stack.status() if p.name == workers.WORKER)
    for process in psutil.Process(record.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.environ().get("PREFECT__FLOW_RUN_ID") == run_id:
                return process
    raise AssertionError(f"no process of the worker runs {run_id}")


def _states(stack: Stack, run_id: str) -> list[str]:
    states = stack.get(f"flow_run_states/?flow_run_id={run_id}")
    return [state["type"] for state in sorted(states, key=lambda state: state["timestamp"])]


def _wait_state(stack: Stack, run_id: str, wanted: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wanted in _states(stack, run_id):
            return
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} never {wanted}: {_states(stack, run_id)}")


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def _slow_numerai(stack: Stack, seconds: float) -> Iterator[None]:
    """Every Numerai API call of the sandbox takes `seconds`: a run that lasts long enough."""
    faults = stack.url("sandbox", "_sandbox/faults")
    httpx.post(faults, json={"latency_s": seconds}, timeout=10).raise_for_status()
    try:
        yield
    finally:
        httpx.post(faults, json={"latency_s": 0}, timeout=10).raise_for_status()


def test_the_pool_starts_its_runs_with_the_launcher(warm):
    pool = warm.get("work_pools/local")
    command = pool["base_job_template"]["variables"]["properties"]["command"]["default"]
    assert command.endswith("-m infra.local.launcher")
    socket = warm.stack.run_dir / workers.ZYGOTE_SOCKET
    assert socket.is_socket()
    assert socket.stat().st_mode & 0o777 == 0o600  # the environments it carries hold keys


def test_warm_runs_are_forked_by_the_zygote_and_submit_with_their_trigger_ids(warm):
    zygote = _zygote(warm)
    children = []
    for _ in range(2):
        trigger_id = _fire(warm)
        run = warm.wait_completed(trigger_id)
        assert run["state_type"] == "COMPLETED", logs(warm.stack)
        assert [s["trigger_id"] for s in warm.submissions(trigger_id)] == [trigger_id]
        child, parent = _forked(warm, run["id"])
        assert parent == zygote.pid
        children.append(child)
    assert children[0] != children[1]  # a fresh child per run, the same warm parent
    assert zygote.is_running()


def test_cancelling_a_warm_run_ends_its_child(warm):
    with _slow_numerai(warm, 3):
        run_id = _run_id(warm, _fire(warm))
        child, _ = _forked(warm, run_id)
        _wait_state(warm, run_id, "RUNNING")
        answer = warm.api(
            f"flow_runs/{run_id}/set_state",
            {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True},
        )
        assert answer.status_code in (200, 201), answer.text
        _wait_state(warm, run_id, "CANCELLED")
        assert _gone(child), f"the cancelled run's child {child} still runs"
    assert _zygote(warm).is_running()


def test_killing_a_warm_runs_launcher_kills_its_child_and_the_run_crashes(warm):
    """What a worker's SIGKILL does: the zygote sees its launcher go and ends the child."""
    with _slow_numerai(warm, 3):
        run_id = _run_id(warm, _fire(warm))
        child, _ = _forked(warm, run_id)
        _launcher(warm, run_id).send_signal(signal.SIGKILL)
        assert _gone(child), f"the killed run's child {child} still runs"
        _wait_state(warm, run_id, "CRASHED")
    assert _zygote(warm).is_running()


def test_with_the_zygote_stopped_runs_start_cold_and_still_submit(warm):
    state = read_state(warm.stack.stack_file)
    assert state is not None
    stop(processes(state)[workers.ZYGOTE], timeout=10)
    socket: Path = warm.stack.run_dir / workers.ZYGOTE_SOCKET
    assert not socket.exists()
    trigger_id = _fire(warm)
    run = warm.wait_completed(trigger_id)
    assert run["state_type"] == "COMPLETED", logs(warm.stack)
    assert [s["trigger_id"] for s in warm.submissions(trigger_id)] == [trigger_id]
    assert MARKER not in _run_logs(warm, run["id"])
    assert "starting the flow run cold" in warm.stack.log_tail(workers.WORKER, 400)
