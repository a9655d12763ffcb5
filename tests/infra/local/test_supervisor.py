"""The stack's supervisor: a child that dies is started again; a stop ends it for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

# A child that records its PID in a file, then lives for as long as another file says.
_CHILD = """
import os, pathlib, sys, time
log = pathlib.Path(sys.argv[1])
with log.open("a") as handle:
    handle.write(f"{os.getpid()}\\n")
time.sleep(float(pathlib.Path(sys.argv[2]).read_text()))
"""


def _supervise(tmp_path: Path, lifetime: float) -> tuple[subprocess.Popen[bytes], Path]:
    starts, lifetime_file = tmp_path / "starts", tmp_path / "lifetime"
    lifetime_file.write_text(str(lifetime))
    command = [sys.executable, "-c", _CHILD, str(starts), str(lifetime_file)]
    with (tmp_path / "supervisor.log").open("wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "infra.local.supervisor", "--name", "child", "--", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # as the stack starts it: a process group of its own
        )
    return supervisor, starts


def _pids(starts: Path) -> list[int]:
    return [int(line) for line in starts.read_text().split()] if starts.exists() else []


def _wait_for(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_child_that_dies_is_started_again_and_the_log_says_why(tmp_path):
    supervisor, starts = _supervise(tmp_path, 600)
    try:
        _wait_for(lambda: len(_pids(starts)) == 1)
        first = _pids(starts)[0]
        os.kill(first, signal.SIGKILL)  # the child dies; the supervisor lives on

        _wait_for(lambda: len(_pids(starts)) == 2)
        second = _pids(starts)[1]
        assert second != first and psutil.pid_exists(second)
        assert supervisor.poll() is None
        log = (tmp_path / "supervisor.log").read_text()
        assert "the child exited with code -9" in log and "(restart 1)" in log
    finally:
        os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait(10)


def test_sigint_to_the_group_stops_the_child_and_nothing_restarts_it(tmp_path):
    supervisor, starts = _supervise(tmp_path, 600)
    _wait_for(lambda: len(_pids(starts)) == 1)
    (child,) = _pids(starts)

    os.killpg(supervisor.pid, signal.SIGINT)  # what `numerai-nodes down` sends first

    assert supervisor.wait(10) == 0
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
    time.sleep(1.5)  # past the first restart delay
    assert _pids(starts) == [child]


def test_sigterm_to_the_supervisor_alone_is_passed_on_to_the_child(tmp_path):
    supervisor, starts = _supervise(tmp_path, 600)
    _wait_for(lambda: len(_pids(starts)) == 1)
    (child,) = _pids(starts)

    supervisor.terminate()

    assert supervisor.wait(10) == 0
    _wait_for(lambda: not psutil.pid_exists(child))
    assert _pids(starts) == [child]


def test_a_child_that_keeps_dying_young_waits_longer_each_time(tmp_path):
    supervisor, starts = _supervise(tmp_path, 0)
    try:
        _wait_for(lambda: len(_pids(starts)) == 3, timeout=15)  # after pauses of 1 s and 2 s
        log = (tmp_path / "supervisor.log").read_text()
        assert "starting it again in 1 s (restart 1)" in log
        assert "starting it again in 2 s (restart 2)" in log
    finally:
        os.killpg(supervisor.pid, signal.SIGINT)
        supervisor.wait(10)
