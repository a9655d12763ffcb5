"""Supervising the local stack's processes: start one in its own group, check it, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

HOST = "127.0.0.1"

# Popen objects of the children this interpreter started, so that it can reap them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRecord:
    """A process the stack started: its PID and start time (so a reused PID is never signalled)."""

    name: str
    pid: int
    create_time: float
    url: str | None
    log: str


def spawn(
    name: str, command: list[str], env: Mapping[str, str], url: str | None, log: Path, cwd: Path
) -> ProcessRecord:
    """Start `command` in a process group of its own, its output going to `log`."""
    with log.open("wb") as handle:
        popen = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals the whole group
        )
    _CHILDREN[popen.pid] = popen
    return ProcessRecord(name, popen.pid, _create_time(popen.pid), url, str(log))


def alive(process: ProcessRecord) -> bool:
    """Whether the very process of the record still runs."""
    return _same_process(process) is not None


def stop(process: ProcessRecord, timeout: float) -> None:
    """SIGINT, then SIGTERM, then SIGKILL, to the process group of a process the stack started."""
    live = _same_process(process)
    if live is None:
        return
    group = process.pid if _group_of(process.pid) == process.pid else None
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        _signal(process.pid, group, sig)
        try:
            live.wait(wait)
            break
        except psutil.TimeoutExpired:
            continue
        except psutil.Error:
            break
    _reap(process.pid)
    if group is not None:
        _stop_group_leftovers(group)


def port_free(port: int) -> bool:
    """Whether a server could bind `port` on the stack's host now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: a socket in TIME_WAIT from a stopped stack does not count as in use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def get_ok(url: str) -> bool:
    """Whether GET `url` answers 200 within 2 s."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file; empty when it does not exist."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = min(size, max(8192, lines * 400))
            handle.seek(size - block)
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _same_process(process: ProcessRecord) -> psutil.Process | None:
    """The live process of a record; None when it is gone, a zombie, or its PID was reused."""
    try:
        live = psutil.Process(process.pid)
        if abs(live.create_time() - process.create_time) > 0.5:
            return None
        if live.status() == psutil.STATUS_ZOMBIE:
            _reap(process.pid)
            return None
        return live
    except psutil.Error:
        return None


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)


def _stop_group_leftovers(group: int) -> None:
    # Children of the stopped process (the worker's flow runs) share its process group; while
    # any of them exists, Linux does not give the group's id to another process.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_exists(group):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + 5.0
        while _group_exists(group) and time.monotonic() < deadline:
            time.sleep(0.1)


def _group_exists(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _signal(pid: int, group: int | None, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group is not None:
            os.killpg(group, sig)
        else:
            os.kill(pid, sig)
