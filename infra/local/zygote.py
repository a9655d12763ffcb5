"""The warm parent of the local flow runs: imports Prefect and the node flows once, forks per run.

    python -m infra.local.zygote --socket <run dir>/zygote.sock

Starting a flow run cold costs seconds: a new interpreter imports Prefect, pandas, LightGBM and
the node flows before the first task runs. The local stack starts this process once (under its
supervisor, like the workers). It imports all of that, never trains or opens a client, and waits
on a unix socket (mode 0600, in the stack's private run directory) for the launcher
(`infra/local/launcher.py`) that the worker starts for each flow run. For each request it forks
a child that takes the launcher's environment, working directory and stdin/stdout/stderr, then
runs exactly what `python -m prefect.engine` runs, with its own Prefect settings, logging and
API client (none exists before the fork). The zygote reports the child's PID and then its exit
status to the launcher, passes on the signals the launcher forwards, and kills the child when the
launcher disappears (a worker's SIGKILL). A child dies with the zygote (PR_SET_PDEATHSIG), so a
run never outlives the process that watches it; its worker then sees it crash.

Fork safety: the zygote stays single-threaded in Python (it refuses to serve otherwise), never
enters an OpenMP region (no training, so LightGBM's thread pool does not exist yet), and opens no
socket but its own. The native threads that libraries start at import (OpenBLAS, jemalloc) are
idle pools that re-create themselves in a child (their fork handlers).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import os
import runpy
import selectors
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy
import prefect.context
import prefect.engine
import pydantic
from prefect.logging.configuration import setup_logging
from prefect.logging.loggers import flow_run_logger

from flows.errors import NodeError
from infra.local.launcher import Channel

# What a flow run imports anyway; the zygote imports it once so that no child has to.
PRELOAD = (
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.deployments.steps",
    "prefect._internal.metrics",
    "prefect.utilities.visualization",  # the first task call imports it (and graphviz)
    "anyio._backends._asyncio",  # the first client's event loop imports it
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",  # the first `pq.read_table` imports it
    "lightgbm",
    "flows.tournament",
    "flows.signals",
    "flows.crypto",
    "flows.training",
)
# The first line a warm child writes to its flow run's logs (tests and people look for it).
MARKER = "Warm start: forked from the zygote"
_PR_SET_PDEATHSIG = 1
_PREFIX = "[numerai-nodes zygote]"


class NotForkSafe(NodeError, RuntimeError):
    """Something started a Python thread in the zygote: forking it would copy a half-state."""


@dataclass
class _Run:
    """A forked child and the launcher that waits for it."""

    pid: int
    channel: Channel
    started: float
    reaped: bool = False
    connected: bool = True


@dataclass
class Job:
    """What a forked child runs: the launcher's request, its descriptors already in place."""

    request: dict[str, Any]
    zygote_pid: int
    zygote_settings: dict[str, str]
    forked_at: float = field(default_factory=time.perf_counter)

    def settings_differ(self) -> bool:
        """Whether Prefect would read other settings here than it read in the zygote: another
        PREFECT_* environment, or a settings file in this run's working directory."""
        files = (".env", "prefect.toml", "pyproject.toml")
        here = Path(self.request["cwd"])
        return prefect_environment(os.environ) != self.zygote_settings or any(
            (here / name).exists() for name in files
        )

    def run(self) -> int:
        """Become the flow run's process, then run `python -m prefect.engine` in it."""
        _adopt(self)
        _announce(self)
        sys.argv = [prefect.engine.__file__, *self.request.get("argv", [])]
        try:
            # `python -m prefect.engine`, without runpy's warning that the zygote imported it.
            runpy.run_path(prefect.engine.__file__, run_name="__main__")
        except SystemExit as exit:
            return _exit_code(exit.code)
        return 0


class Zygote:
    """Serves fork requests on `path` until SIGTERM or SIGINT."""

    def __init__(self, path: Path):
        self.path = path
        self.pid = os.getpid()
        # A worker passes its settings on to each run as PREFECT_* variables (as Prefect
        # spells them); with the same settings as this zygote's, a child need not re-read them.
        exported = prefect.context.get_settings_context().settings.to_environment_variables(
            exclude_unset=True
        )
        self._settings = prefect_environment({**os.environ, **exported})
        self._runs: dict[int, _Run] = {}
        self._by_fd: dict[int, _Run] = {}
        self._stopping = False
        self._selector = selectors.DefaultSelector()

    def serve(self) -> Job | None:
        """Serve until stopped (returns None); in a forked child, return the child's Job."""
        check_fork_safe()
        listener = _listen(self.path)
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        signal.set_wakeup_fd(wake_write.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        selector = self._selector
        selector.register(listener, selectors.EVENT_READ, "accept")
        selector.register(wake_read, selectors.EVENT_READ, "wake")
        _say(f"ready on {self.path} (pid {self.pid}, {_native_threads()} native threads)")
        try:
            while not self._stopping:
                for key, _ in selector.select(timeout=1.0):
                    if key.data == "accept":
                        job = self._accept(listener, selector)
                        if job is not None:
                            for closing in (selector, listener, wake_read, wake_write):
                                closing.close()
                            return job
                    elif key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            wake_read.recv(4096)
                    else:
                        run = self._by_fd.get(key.fd)
                        if run is not None:  # not forgotten earlier in this batch
                            self._from_launcher(run, selector)
                self._reap()
        finally:
            if os.getpid() == self.pid:
                signal.set_wakeup_fd(-1)
                self.path.unlink(missing_ok=True)
                for run in self._runs.values():
                    if not run.reaped:
                        _kill(run.pid, signal.SIGKILL)
        return None

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _accept(self, listener: socket.socket, selector: selectors.BaseSelector) -> Job | None:
        connection, _ = listener.accept()
        connection.settimeout(5.0)  # a launcher sends its request at once
        channel = Channel(connection)
        try:
            fed = channel.feed(max_fds=3)
            while fed is not None and not fed[0]:
                more = channel.feed()
                fed = None if more is None else (more[0], fed[1])
        except OSError:
            fed = None
        if fed is None or len(fed[1]) != 3:
            for fd in fed[1] if fed else []:
                os.close(fd)
            connection.close()
            return None
        request, fds = fed[0][0], fed[1]
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            connection.close()
            for run in self._runs.values():
                with contextlib.suppress(OSError):
                    run.channel.sock.close()
            _take_descriptors(fds)
            return Job(request, self.pid, self._settings)
        for fd in fds:
            os.close(fd)
        run = _Run(pid, channel, time.monotonic())
        self._runs[pid] = run
        self._by_fd[connection.fileno()] = run
        connection.settimeout(None)
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ, "launcher")
        with contextlib.suppress(OSError):
            connection.setblocking(True)
            channel.send({"pid": pid})
            connection.setblocking(False)
        return None

    def _from_launcher(self, run: _Run, selector: selectors.BaseSelector) -> None:
        try:
            fed = run.channel.feed()
        except BlockingIOError:
            return
        except OSError:
            fed = None
        if fed is None:
            # The launcher is gone (the worker killed it): its run must not go on unwatched.
            self._forget(run)
            if not run.reaped:
                _kill(run.pid, signal.SIGKILL)
            return
        for message in fed[0]:
            signum = message.get("signal")
            if isinstance(signum, int) and not run.reaped:
                _kill(run.pid, signum)

    def _forget(self, run: _Run) -> None:
        """Stop listening to a run's launcher (before its descriptor can be reused)."""
        if run.connected:
            self._selector.unregister(run.channel.sock)
            self._by_fd.pop(run.channel.sock.fileno(), None)
            run.channel.sock.close()
            run.connected = False

    def _reap(self) -> None:
        while self._runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self._runs.pop(pid, None)
            if run is None:
                continue
            run.reaped = True
            code = os.waitstatus_to_exitcode(status)
            _say(f"child {pid} exited with {code} after {time.monotonic() - run.started:.1f} s")
            if run.connected:
                with contextlib.suppress(OSError):
                    run.channel.sock.setblocking(True)
                    run.channel.send({"exit": code})
                self._forget(run)


def prefect_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment variables Prefect reads its settings from (`PREFECT__*` are a run's
    bootstrap values, not settings)."""
    return {
        key: value
        for key, value in environ.items()
        if key.startswith("PREFECT_") and not key.startswith("PREFECT__")
    }


def check_fork_safe() -> None:
    """Raise NotForkSafe when a Python thread besides the main one runs."""
    main = threading.main_thread()
    others = [thread.name for thread in threading.enumerate() if thread is not main]
    if others:
        raise NotForkSafe(f"threads started before the first fork: {', '.join(others)}")


def preload(modules: tuple[str, ...] = PRELOAD) -> float:
    """Import what every flow run needs and build Prefect's API models; returns the seconds it
    took."""
    started = time.perf_counter()
    for module in modules:
        importlib.import_module(module)
    build_prefect_models()
    return time.perf_counter() - started


def build_prefect_models() -> None:
    """Build the validators of Prefect's imported pydantic models.

    Prefect's models (FlowRun, Deployment, WorkPool, Event, ...) are defined before the types they
    refer to, so pydantic builds each on its first use: in every child, once per run, unless the
    zygote builds them before it forks.
    """
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("prefect."):
            continue
        for value in list(vars(module).values()):
            if (
                isinstance(value, type)
                and issubclass(value, pydantic.BaseModel)
                and value.__module__ == name
                and not value.__pydantic_complete__
            ):
                with contextlib.suppress(pydantic.PydanticUndefinedAnnotation):
                    value.model_rebuild()


def _listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # the socket is born 0600: the environment it carries holds keys
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    path.chmod(0o600)
    listener.listen(64)
    return listener


def _take_descriptors(fds: list[int]) -> None:
    """In the child: the launcher's stdin, stdout and stderr become ours."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)


def _adopt(job: Job) -> None:
    """In the child: the launcher's environment, working directory and import path; die with
    the zygote; fresh Prefect settings, logging and random state."""
    zygote = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote:  # the zygote died before the line above
        os._exit(1)
    request = job.request
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    # As `python -m` would: the working directory first, then PYTHONPATH's entries.
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:1] = [request["cwd"], *[p for p in extra if p not in sys.path]]
    tempfile.tempdir = None
    numpy.random.seed()  # every child would otherwise share the zygote's global random state
    if job.settings_differ():
        # Prefect read its settings (and configured logging from them) at import, in the
        # zygote; this run's differ, so read them again (0.4 s, skipped when they are the same).
        prefect.context.refresh_global_settings_context()
        setup_logging(incremental=False)


def _announce(job: Job) -> None:
    try:
        run_id = UUID(os.environ.get("PREFECT__FLOW_RUN_ID", ""))
    except ValueError:
        return  # the engine reports it
    took = (time.perf_counter() - job.forked_at) * 1000
    flow_run_logger(flow_run_id=run_id).info(
        "%s (pid %d, parent pid %d) in %.0f ms; Prefect and the node flows were imported already.",
        MARKER, os.getpid(), job.zygote_pid, took,
    )  # fmt: skip


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _native_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def _say(message: str) -> None:
    print(f"{_PREFIX} {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.zygote", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--socket", type=Path, required=True, help="Where to listen.")
    args = parser.parse_args(argv)
    _say(f"imported Prefect and the node flows in {preload():.1f} s")
    try:
        job = Zygote(args.socket).serve()
    except NotForkSafe as error:
        _say(f"not serving: {error}; flow runs start cold")
        return 2
    if job is None:
        _say("stopped")
        return 0
    return job.run()


if __name__ == "__main__":
    sys.exit(main())
