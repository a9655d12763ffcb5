"""Start a sandbox (a local Numerai) as a child process for `--sandbox` runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deployments.cli.output import err_console


@dataclass
class SandboxProcess:
    """A running sandbox: where it listens, its keys and models, and its process."""

    url: str
    public_id: str
    secret_key: str
    models: dict[str, str]
    process: subprocess.Popen = field(repr=False)
    yahoo_url: str | None = None
    model_tournaments: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """What a node needs to talk to this sandbox instead of Numerai (and Yahoo)."""
        env = {
            "NUMERAI_API_URL": self.url,
            "NUMERAI_PUBLIC_ID": self.public_id,
            "NUMERAI_SECRET_KEY": self.secret_key,
        }
        if self.yahoo_url:
            env["NUMERAI_NODES_YAHOO_URL"] = self.yahoo_url
        return env

    def model_names(self, tournament: int) -> list[str]:
        """The sandbox's models in a tournament (a model of unknown tournament is Classic)."""
        return [m for m in self.models if self.model_tournaments.get(m, 8) == tournament]

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_sandbox(root: Path, size: str, seed: int = 0, timeout: float = 900) -> SandboxProcess:
    """Start `python -m sandbox serve` and wait until it is listening (data generation included)."""
    root.mkdir(parents=True, exist_ok=True)
    ready = Path(tempfile.mkdtemp(prefix="numerai-nodes-")) / "ready.json"
    log = (root / "sandbox.log").open("ab")
    command = [
        sys.executable, "-m", "sandbox", "serve",
        "--port", "0", "--root", str(root), "--size", size, "--seed", str(seed),
        "--ready-file", str(ready),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + timeout
    with err_console.status(f"Starting the sandbox ({size} data; the first start generates it)"):
        while not ready.exists():
            if process.poll() is not None:
                raise RuntimeError(
                    f"The sandbox exited with code {process.returncode}; see {root / 'sandbox.log'}"
                )
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"The sandbox did not start in {timeout:.0f} s")
            time.sleep(0.2)
    info = json.loads(ready.read_text())
    ready.unlink()
    return SandboxProcess(
        url=info["url"],
        public_id=info["public_id"],
        secret_key=info["secret_key"],
        models=info["models"],
        process=process,
        yahoo_url=info.get("yahoo_url"),
        model_tournaments=info.get("model_tournaments", {}),
    )
