"""Keeps one process of the local stack running: starts it again when it dies, until told to stop.

    python -m infra.local.supervisor --name worker -- prefect worker start --pool local ...

The local stack runs its worker and its gateway under this, so a worker killed on round day
(out of memory, a stray `kill`) is back within seconds instead of leaving every node's runs Late.
The child shares the supervisor's process group, and the stack stops the group as a whole
(`numerai-nodes down` signals it, as Ctrl-C in a terminal would): a SIGINT makes the supervisor
wait for its child to finish and exit with it. A SIGTERM sent to the supervisor alone is passed
on to the child. A child that exits by itself (whatever its exit code) is started again after a
pause that grows while it keeps dying young.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

# Pauses before each restart while the child keeps dying young; the last one repeats.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
# A child that ran at least this long counts as healthy: the next restart pauses the least.
HEALTHY_SECONDS = 60.0
_PREFIX = "[numerai-nodes supervisor]"


class Supervisor:
    """Runs `command` until stopped, starting it again whenever it exits."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        delays: Sequence[float] = RESTART_DELAYS,
        healthy_seconds: float = HEALTHY_SECONDS,
    ):
        self.name = name
        self.command = list(command)
        self.delays = tuple(delays)
        self.healthy_seconds = healthy_seconds
        self.restarts = 0
        self._stopping = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None

    def stop(self, signum: int, frame: FrameType | None = None) -> None:
        """Signal handler: stop restarting; pass a SIGTERM on (a SIGINT reached the group)."""
        self._stopping.set()
        child = self._child
        if signum == signal.SIGTERM and child is not None and child.poll() is None:
            child.terminate()

    def run(self) -> int:
        """Start the child and keep it running; returns its last exit code once stopped."""
        failures_in_a_row = 0
        while True:
            started = time.monotonic()
            self._child = subprocess.Popen(self.command)
            code = self._child.wait()
            lived = time.monotonic() - started
            if self._stopping.is_set():
                return 0 if code in (0, -signal.SIGINT, -signal.SIGTERM) else code
            failures_in_a_row = 1 if lived >= self.healthy_seconds else failures_in_a_row + 1
            delay = self.delays[min(failures_in_a_row, len(self.delays)) - 1]
            self.restarts += 1
            _say(
                f"the {self.name} exited with code {code} after {lived:.0f} s; starting it again "
                f"in {delay:.0f} s (restart {self.restarts})"
            )
            if self._stopping.wait(delay):
                return 0


def supervised(name: str, command: Sequence[str]) -> list[str]:
    """`command` under this supervisor, as the stack starts it."""
    return [sys.executable, "-m", "infra.local.supervisor", "--name", name, "--", *command]


def _say(message: str) -> None:
    print(f"{_PREFIX} {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.supervisor", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--name", required=True, help="What the child is, for the log.")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the child's command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to supervise after --")
    supervisor = Supervisor(args.name, command)
    signal.signal(signal.SIGINT, supervisor.stop)
    signal.signal(signal.SIGTERM, supervisor.stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
