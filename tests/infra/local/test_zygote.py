"""The zygote and its launcher, as real processes: forking, descriptors, exit codes, signals.

No Prefect server: a child runs `python -m prefect.engine` as a worker's flow run would, and
the engine fails (a bad run id) or waits (an API that never answers) as needed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from infra.local.launcher import SOCKET_ENV
from infra.local.zygote import NotForkSafe, check_fork_safe

PROJECT = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def zygote(tmp_path_factory) -> Iterator[tuple[Path, psutil.Process, Path]]:
    """A running zygote: its socket, its process and its log."""
    root = tmp_path_factory.mktemp("zygote")
    path, log = root / "z.sock", root / "zygote.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.zygote", "--socket", str(path)],
            cwd=root, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while not path.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield path, psutil.Process(process.pid), log
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def _launch(socket_path: Path | None, cwd: Path, **env: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "PREFECT__FLOW_RUN_ID": "not-a-uuid", **env}
    environment.pop(SOCKET_ENV, None)
    if socket_path is not None:
        environment[SOCKET_ENV] = str(socket_path)
    return subprocess.Popen(
        [sys.executable, "-m", "infra.local.launcher"],
        cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _silent_api() -> tuple[socket.socket, str]:
    """A loopback 'Prefect API' that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    return server, f"http://127.0.0.1:{server.getsockname()[1]}/api"


def _forked_child(zygote: psutil.Process, timeout: float = 30) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if children := zygote.children():
            return children[0]
        time.sleep(0.05)
    raise AssertionError("the zygote forked no child")


def test_the_socket_is_private(zygote):
    path, _, _ = zygote
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_forked_run_gets_the_launchers_output_working_directory_and_exit_code(zygote, tmp_path):
    path, process, log = zygote
    launched = _launch(path, tmp_path)
    _, err = launched.communicate(timeout=60)
    # The engine in the child wrote to the launcher's own stderr (its descriptor was passed).
    assert "Invalid flow run id" in err, err
    assert "starting the flow run cold" not in err
    assert launched.returncode == 1
    assert "exited with 1" in log.read_text()
    assert process.is_running()


def test_without_a_zygote_the_launcher_starts_the_run_cold(tmp_path):
    launched = _launch(tmp_path / "missing.sock", tmp_path)
    _, err = launched.communicate(timeout=120)
    assert "the warm zygote is not running; starting the flow run cold" in err
    assert "Invalid flow run id" in err  # `python -m prefect.engine` ran
    assert launched.returncode == 1


def test_a_sigterm_to_the_launcher_reaches_the_child_and_the_launcher_dies_of_it(zygote, tmp_path):
    path, process, _ = zygote
    server, api = _silent_api()
    with server:
        launched = _launch(path, tmp_path, PREFECT__FLOW_RUN_ID=str(uuid.uuid4()),
                           PREFECT_API_URL=api)  # fmt: skip
        child = _forked_child(process)
        assert Path(child.cwd()) == tmp_path
        server.settimeout(60)
        server.accept()[0].close()  # the child calls the API the launcher's environment names
        launched.send_signal(signal.SIGTERM)
        launched.communicate(timeout=30)
    assert launched.returncode == -signal.SIGTERM  # as a cold engine killed by it would
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_a_killed_launcher_takes_its_child_with_it(zygote, tmp_path):
    path, process, _ = zygote
    server, api = _silent_api()
    with server:
        launched = _launch(path, tmp_path, PREFECT__FLOW_RUN_ID=str(uuid.uuid4()),
                           PREFECT_API_URL=api)  # fmt: skip
        child = _forked_child(process)
        launched.kill()
        launched.communicate(timeout=30)
        child.wait(15)  # the zygote saw its launcher go and killed the child
    assert process.is_running()


def test_a_zygote_with_a_thread_refuses_to_fork():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="stray")
    thread.start()
    try:
        with pytest.raises(NotForkSafe, match="stray"):
            check_fork_safe()
    finally:
        stop.set()
        thread.join()
    # Earlier tests in this process may have left threads of their own (Prefect's workers); the
    # stray one, once stopped, is no longer named.
    try:
        check_fork_safe()
    except NotForkSafe as exc:
        assert "stray" not in str(exc)


def test_after_the_preload_no_prefect_model_is_left_for_a_child_to_build():
    # In a fresh interpreter, as the zygote starts: pydantic defers Prefect's models (FlowRun,
    # Deployment, Event...) to their first use, which would be in every forked child.
    script = """
import sys, threading, pydantic
from infra.local import zygote
zygote.preload()
left = [
    value.__name__
    for name, module in list(sys.modules.items()) if module and name.startswith("prefect.")
    for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, pydantic.BaseModel)
    and value.__module__ == name and not value.__pydantic_complete__
]
from prefect.client.schemas.objects import FlowRun
print(len(left), FlowRun.__pydantic_complete__, "pyarrow.dataset" in sys.modules,
      threading.active_count())
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True", "True", "1"]
