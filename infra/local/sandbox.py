"""Start a sandbox (a local Numerai) as a child process, for `--sandbox` runs and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from flows.settings import node_env
from flows.tournaments import CLASSIC, Tournament
from infra.local.reporter import Reporter, SilentReporter
from infra.local.state import StackError
from sandbox.ready import READY_FILE, SandboxReady


@dataclass
class SandboxProcess:
    """A running sandbox: where it listens, its keys and models, and its process."""

    ready: SandboxReady
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return self.ready.url

    def env(self) -> dict[str, str]:
        """What a node needs to talk to this sandbox instead of Numerai (and Yahoo)."""
        return sandbox_env(self.ready)

    def model_names(self, tournament: Tournament) -> list[str]:
        """The sandbox's models in a tournament."""
        return model_names(self.ready, tournament)

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def model_names(ready: SandboxReady, tournament: Tournament) -> list[str]:
    """A sandbox's models in a tournament (a model of unknown tournament is Classic)."""
    tournaments = ready.model_tournaments
    return [m for m in ready.models if tournaments.get(m, CLASSIC) == tournament]


def sandbox_env(ready: SandboxReady) -> dict[str, str]:
    """The environment that points a node at a running sandbox (its API, keys, Yahoo fake)."""
    return node_env(ready.url, ready.public_id, ready.secret_key, ready.yahoo_url)


def start_sandbox(
    root: Path,
    size: str,
    seed: int = 0,
    timeout: float = 900,
    reporter: Reporter | None = None,
    port: int = 0,
) -> SandboxProcess:
    """Start `python -m sandbox serve` and wait until it is listening (data generation included).

    `port` 0 takes a free one. A node's data cache and model cache are keyed by the API's
    address, so a sandbox that is started again on the same port finds what the last one left.
    """
    reporter = reporter or SilentReporter()
    root.mkdir(parents=True, exist_ok=True)
    ready_file = Path(tempfile.mkdtemp(prefix="numerai-nodes-")) / READY_FILE
    log_path = root / "sandbox.log"
    command = [
        sys.executable, "-m", "sandbox", "serve",
        "--port", str(port), "--root", str(root), "--size", size, "--seed", str(seed),
        "--ready-file", str(ready_file),
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
    deadline = time.monotonic() + timeout
    with reporter.step(f"Starting the sandbox ({size} data; the first start generates it)"):
        while (ready := SandboxReady.read(ready_file)) is None:
            if process.poll() is not None:
                raise StackError(
                    f"The sandbox exited with code {process.returncode}; see {log_path}"
                )
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise StackError(f"The sandbox did not start in {timeout:.0f} s; see {log_path}")
            time.sleep(0.2)
    ready_file.unlink()
    ready_file.parent.rmdir()
    return SandboxProcess(ready, process)
