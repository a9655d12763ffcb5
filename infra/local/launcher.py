"""The process pools' flow-run command: start the run from the warm zygote, else as Prefect does.

    python -m infra.local.launcher            (the `command` of the local pools' job template)

A process worker starts this for each flow run, exactly as it would start `python -m
prefect.engine`: with the run's environment, working directory and output pipes. It imports
nothing but the standard library, so it starts in a few milliseconds. It hands those three things
(its stdin, stdout and stderr as file descriptors) to the zygote (`infra/local/zygote.py`) over
its unix socket; the zygote forks a child that has Prefect and the node flows imported already,
and that child runs the engine. The launcher stays the worker's process for the run: it passes
SIGTERM, SIGINT and SIGHUP on to the child (so a cancel or a kill from the worker reaches the run)
and exits as the child did (the same code, or the same signal).

Without a zygote (not started, or `NUMERAI_NODES_WARM_START=false`), it replaces itself with
`python -m prefect.engine`: the cold path, so nothing depends on the zygote running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from typing import Any

# Set on the workers (and so on their flow runs) by the local stack: the zygote's socket.
SOCKET_ENV = "NUMERAI_NODES_ZYGOTE_SOCKET"
# The signals a worker (or Ctrl-C on the stack) sends that must reach the flow run.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_HEADER = struct.Struct("!I")
_CONNECT_TIMEOUT = 2.0
_PREFIX = "[numerai-nodes launcher]"


class Channel:
    """Length-prefixed JSON messages over a unix socket; descriptors travel with a message."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = b""
        self._pending: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        payload = json.dumps(message).encode()
        data = _HEADER.pack(len(payload)) + payload
        if fds:
            sent = socket.send_fds(self.sock, [data], fds)
            data = data[sent:]
        self.sock.sendall(data)

    def feed(self, max_fds: int = 0) -> tuple[list[dict[str, Any]], list[int]] | None:
        """Read once: the messages now complete and any descriptors; None at end of stream."""
        if max_fds:
            chunk, fds, _, _ = socket.recv_fds(self.sock, 65536, max_fds)
        else:
            chunk, fds = self.sock.recv(65536), []
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None
        self._buffer += chunk
        messages = []
        while len(self._buffer) >= _HEADER.size:
            end = _HEADER.size + _HEADER.unpack_from(self._buffer)[0]
            if len(self._buffer) < end:
                break
            messages.append(json.loads(self._buffer[_HEADER.size : end]))
            self._buffer = self._buffer[end:]
        return messages, list(fds)

    def receive(self) -> dict[str, Any] | None:
        """The next message (blocking); None at end of stream."""
        while True:
            if self._pending:
                return self._pending.pop(0)
            fed = self.feed()
            if fed is None:
                return None
            self._pending.extend(fed[0])


def cold_command() -> list[str]:
    """What the worker would have run without this launcher."""
    return [sys.executable, "-m", "prefect.engine", *sys.argv[1:]]


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_CONNECT_TIMEOUT)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _start_cold(reason: str) -> None:
    print(f"{_PREFIX} {reason}; starting the flow run cold (python -m prefect.engine)",
          file=sys.stderr, flush=True)  # fmt: skip
    command = cold_command()
    os.execv(command[0], command)


def _exit_as(code: int) -> None:
    """Exit with the child's code; a child killed by a signal makes this die of the same one."""
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def main() -> None:
    path = os.environ.get(SOCKET_ENV)
    sock = _connect(path) if path else None
    if sock is None:
        _start_cold("the warm zygote is not running" if path else f"{SOCKET_ENV} is not set")
        return
    channel = Channel(sock)
    request = {"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}
    try:
        channel.send(request, [0, 1, 2])
        sock.settimeout(None)
        started = channel.receive()
    except OSError:
        started = None
    if started is None or "pid" not in started:
        sock.close()
        _start_cold("the warm zygote did not start the flow run")
        return

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):  # the zygote is gone, and its children with it
            channel.send({"signal": signum})

    for signum in FORWARDED:
        signal.signal(signum, forward)
    try:
        finished = channel.receive()
    except OSError:
        finished = None
    if finished is None or "exit" not in finished:
        print(f"{_PREFIX} lost the warm zygote while the flow run ran", file=sys.stderr, flush=True)
        sys.exit(1)
    _exit_as(int(finished["exit"]))


if __name__ == "__main__":
    main()
